"""``diffucoder pipeline schedule ...`` through the real ``kfp.Client`` against a loopback KFP API server
that checks every request against the v2beta1 models and the API server's rules (tests/pipeline/kfp_api.py)."""

from __future__ import annotations

import re

import pytest
from diffucoder_kfp import schedules
from diffucoder_kfp.kfp_client import KfpError, KfpNotFound, connect
from kfp_api import KfpApiServer, check, schedule, serve

from diffucoder.cli import main
from diffucoder.ops.cron import CronError, kfp_cron


@pytest.fixture
def kfp_api(compiled_ir, monkeypatch):
    """(server state, URL); ``api.cli_args`` schedules the session's compiled IR (no compile per command)."""
    api = KfpApiServer()
    server, url = serve(api)
    monkeypatch.delenv("KF_PIPELINES_TOKEN", raising=False)
    api.cli_args = ["--preset", "tiny", "--package", str(compiled_ir[0])]
    yield api, url
    server.shutdown()


def _create(api, url: str, *extra: str, when: tuple[str, str] = ("--cron", "0 3 * * *")) -> int:
    """``schedule create`` of the session's compiled IR, named nightly, at 03:00 daily unless ``when``."""
    return schedule("create", url, "--name", "nightly", *when, *api.cli_args, *extra)


def test_cron_five_fields_become_kfp_six_and_bad_ones_name_the_field():
    assert kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert kfp_cron("30 0 9 ? * MON-FRI") == "30 0 9 ? * MON-FRI"
    assert kfp_cron("@daily") == "0 0 0 * * *"
    assert kfp_cron("*/15 * * * *") == "0 */15 * * * *"
    for bad, field in [("0 25 * * *", "hour"), ("61 * * * *", "minute"), ("0 0 * * FOO", "day-of-week")]:
        with pytest.raises(CronError, match=field):
            kfp_cron(bad)
    with pytest.raises(CronError, match="has 3 fields"):
        kfp_cron("0 3 *")
    with pytest.raises(CronError, match="--interval"):
        kfp_cron("@every 1h")


def test_create_uploads_once_per_package_and_schedules_it(kfp_api, capsys):
    api, url = kfp_api
    pattern = ("--run-name-pattern", "nightly-[[ScheduledTime]]")
    assert _create(api, url, *pattern, "--param", "skip_if_data_unchanged=true") == 0
    out = capsys.readouterr().out
    assert "uploaded" in out and "status ENABLED" in out
    job = next(iter(api.recurring.values()))
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # what KFP reads as 03:00 daily
    assert job["max_concurrency"] == "1" and job["no_catchup"] is True and job["mode"] == "ENABLE"
    assert job["runtime_config"]["parameters"]["run_name"] == "nightly-[[ScheduledTime]]"
    assert job["runtime_config"]["parameters"]["skip_if_data_unchanged"] is True
    version = api.versions[job["pipeline_version_reference"]["pipeline_version_id"]]
    assert (
        version["display_name"].startswith("diffucoder-")
        and len(version["display_name"]) == len("diffucoder-") + 12
    )

    # the same package again: the version is found by its content-hash name, nothing new is uploaded
    versions_before = len(api.versions)
    assert _create(api, url, when=("--interval", "3600")) == 0
    assert "reused" in capsys.readouterr().out
    assert len(api.versions) == versions_before and len(api.recurring) == 2


def test_list_pause_resume_delete(kfp_api, capsys):
    api, url = kfp_api
    window = ("--start", "2026-12-01T03:00:00Z", "--end", "2027-12-01T03:00:00Z")
    assert _create(api, url, *window, "--max-concurrency", "2") == 0
    rid = next(iter(api.recurring))
    capsys.readouterr()
    assert schedule("list", url) == 0
    listing = capsys.readouterr().out
    assert rid in listing and "cron 0 0 3 * * *" in listing and "ENABLED" in listing
    assert schedule("pause", url, rid) == 0
    assert api.recurring[rid]["status"] == "DISABLED"
    assert schedule("resume", url, rid) == 0
    assert api.recurring[rid]["status"] == "ENABLED"
    assert schedule("delete", url, rid) == 0
    assert api.recurring == {}


def test_unknown_schedule_id_is_named(kfp_api, capsys):
    _, url = kfp_api
    for action in ("pause", "resume", "delete"):
        assert schedule(action, url, "no-such-id") == 1  # the service's answer, not a usage error
        assert "no recurring run with id 'no-such-id'" in capsys.readouterr().err


def test_invalid_cron_name_pattern_and_concurrency_are_refused_before_any_call(kfp_api, capsys):
    api, url = kfp_api
    assert _create(api, url, when=("--cron", "0 24 * * *")) == 2
    assert "hour field: 24" in capsys.readouterr().err
    assert _create(api, url, "--run-name-pattern", "nightly") == 2
    assert "names every run the same" in capsys.readouterr().err
    assert _create(api, url, "--max-concurrency", "11") == 2
    assert "KFP allows 1 to 10" in capsys.readouterr().err
    assert api.requests == []


def test_the_server_refuses_what_the_kfp_api_refuses(kfp_api):
    api, url = kfp_api
    client = connect(url)
    exp = client.create_experiment("e")
    with pytest.raises(Exception, match="Max concurrency"):
        client.create_recurring_run(
            exp.experiment_id,
            "j",
            cron_expression="0 0 3 * * *",
            max_concurrency=11,
            pipeline_package_path=None,
            pipeline_id="p",
            version_id="v",
        )
    # a field the v2beta1 model does not have is a 400
    with pytest.raises(Exception, match="unknown field"):
        check({"display_name": "x", "cron": "0 0 3 * * *"}, "V2beta1RecurringRun", "V2beta1RecurringRun")


def test_unreachable_401_and_500_are_named(kfp_api, unused_port, capsys, monkeypatch):
    api, url = kfp_api
    down = f"http://127.0.0.1:{unused_port()}"
    assert schedule("list", down) == 1
    assert f"KFP endpoint {down} does not answer" in capsys.readouterr().err

    api.token = "secret"
    assert schedule("list", url) == 1
    assert "refused the request (401" in capsys.readouterr().err
    assert schedule("list", url, "--token", "secret") == 0
    monkeypatch.setenv("KF_PIPELINES_TOKEN", "secret")  # the token from the environment
    assert schedule("list", url) == 0
    capsys.readouterr()

    api.fail_with = 500
    assert schedule("list", url, "--token", "secret") == 1
    assert "failed with 500" in capsys.readouterr().err
    with pytest.raises(KfpError, match="failed with 500"):
        schedules.list_all(connect(url, token="secret"), url)


def test_a_plan_that_does_not_fit_is_refused_unless_forced(kfp_api, capsys):
    api, url = kfp_api
    package = ["--package", api.cli_args[-1]]
    big = ["--preset", "paper-7b", "instruct.micro_batch_size=64"]
    assert _create(api, url, *big) == 2
    assert re.search(
        r"diffucoder: error: the run does not fit .*stage instruct: .* GiB per GPU",
        capsys.readouterr().err,
        re.S,
    )
    assert api.recurring == {}
    assert _create(api, url, "--force", *big) == 0
    assert len(api.recurring) == 1
    assert main(["pipeline", "submit", "--host", url, *package, *big]) == 2
    assert "stage instruct" in capsys.readouterr().err
    assert api.runs == {}
    assert main(["pipeline", "submit", "--host", url, "--force", *package, *big]) == 0
    assert len(api.runs) == 1


def test_not_found_is_its_own_error(kfp_api):
    _, url = kfp_api
    with pytest.raises(KfpNotFound):
        schedules.pause(connect(url), url, "missing")
