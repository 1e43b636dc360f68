"""``diffucoder pipeline schedule ...`` through the real ``kfp.Client`` against a loopback KFP API server
that checks every request against the v2beta1 models and the API server's rules (tests/pipeline/kfp_api.py)."""

from __future__ import annotations

import pytest
from kfp_api import KfpApiServer, check, serve

from diffucoder.cli import main
from diffucoder.ops.cron import CronError, kfp_cron
from pipelines import schedules
from pipelines.kfp_client import KfpError, KfpNotFound, connect


@pytest.fixture
def kfp_api(compiled_ir):
    """(server state, URL); ``api.cli_args`` schedules the session's compiled IR (no compile per command)."""
    api = KfpApiServer()
    server, url = serve(api)
    api.cli_args = ["--preset", "tiny", "--package", str(compiled_ir[0])]
    yield api, url
    server.shutdown()


def _create(api, url: str, *extra: str) -> int:
    args = ["--host", url, "--name", "nightly", "--cron", "0 3 * * *", *api.cli_args, *extra]
    return main(["pipeline", "schedule", "create", *args])


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
    assert (
        _create(
            api,
            url,
            "--run-name-pattern",
            "nightly-[[ScheduledTime]]",
            "--param",
            "skip_if_data_unchanged=true",
        )
        == 0
    )
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
    assert (
        main(
            [
                "pipeline",
                "schedule",
                "create",
                "--host",
                url,
                "--name",
                "hourly",
                "--interval",
                "3600",
                *api.cli_args,
            ]
        )
        == 0
    )
    assert "reused" in capsys.readouterr().out
    assert len(api.versions) == versions_before and len(api.recurring) == 2


def test_list_pause_resume_delete(kfp_api, capsys):
    api, url = kfp_api
    assert (
        _create(
            api,
            url,
            "--start",
            "2026-12-01T03:00:00Z",
            "--end",
            "2027-12-01T03:00:00Z",
            "--max-concurrency",
            "2",
        )
        == 0
    )
    rid = next(iter(api.recurring))
    capsys.readouterr()
    assert main(["pipeline", "schedule", "list", "--host", url]) == 0
    listing = capsys.readouterr().out
    assert rid in listing and "cron 0 0 3 * * *" in listing and "ENABLED" in listing
    assert main(["pipeline", "schedule", "pause", "--host", url, rid]) == 0
    assert api.recurring[rid]["status"] == "DISABLED"
    assert main(["pipeline", "schedule", "resume", "--host", url, rid]) == 0
    assert api.recurring[rid]["status"] == "ENABLED"
    assert main(["pipeline", "schedule", "delete", "--host", url, rid]) == 0
    assert api.recurring == {}


def test_unknown_schedule_id_is_named(kfp_api, capsys):
    _, url = kfp_api
    for action in ("pause", "resume", "delete"):
        assert main(["pipeline", "schedule", action, "--host", url, "no-such-id"]) == 2
        assert "no recurring run with id 'no-such-id'" in capsys.readouterr().err


def test_invalid_cron_and_name_pattern_are_refused_before_any_call(kfp_api, capsys):
    api, url = kfp_api
    assert (
        main(
            [
                "pipeline",
                "schedule",
                "create",
                "--host",
                url,
                "--name",
                "n",
                "--cron",
                "0 24 * * *",
                *api.cli_args,
            ]
        )
        == 2
    )
    assert "hour field: 24" in capsys.readouterr().err
    assert _create(api, url, "--run-name-pattern", "nightly") == 2
    assert "names every run the same" in capsys.readouterr().err
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


def test_unreachable_401_and_500_are_named(kfp_api, unused_port, capsys):
    api, url = kfp_api
    down = f"http://127.0.0.1:{unused_port()}"
    assert main(["pipeline", "schedule", "list", "--host", down]) == 2
    assert f"KFP endpoint {down} does not answer" in capsys.readouterr().err

    api.token = "secret"
    assert main(["pipeline", "schedule", "list", "--host", url]) == 2
    assert "refused the request (401" in capsys.readouterr().err
    assert main(["pipeline", "schedule", "list", "--host", url, "--token", "secret"]) == 0
    capsys.readouterr()

    api.fail_with = 500
    assert main(["pipeline", "schedule", "list", "--host", url, "--token", "secret"]) == 2
    assert "failed with 500" in capsys.readouterr().err
    with pytest.raises(KfpError, match="failed with 500"):
        schedules.list_all(connect(url, token="secret"), url)


def test_a_plan_that_does_not_fit_is_refused_unless_forced(kfp_api, capsys):
    api, url = kfp_api
    big = ["--preset", "paper-7b", "instruct.micro_batch_size=64"]
    package = api.cli_args[2:]
    with pytest.raises(SystemExit, match="stage instruct: .* GiB per GPU"):
        main(
            [
                "pipeline",
                "schedule",
                "create",
                "--host",
                url,
                "--name",
                "n",
                "--cron",
                "@daily",
                *package,
                *big,
            ]
        )
    assert api.recurring == {}
    assert (
        main(
            [
                "pipeline",
                "schedule",
                "create",
                "--host",
                url,
                "--name",
                "n",
                "--cron",
                "@daily",
                "--force",
                *big,
            ]
        )
        == 0
    )
    with pytest.raises(SystemExit, match="stage instruct"):
        main(["pipeline", "submit", "--host", url, *big])
    assert api.runs == {}
    assert main(["pipeline", "submit", "--host", url, "--force", *big]) == 0
    assert len(api.runs) == 1


def test_not_found_is_its_own_error(kfp_api):
    _, url = kfp_api
    with pytest.raises(KfpNotFound):
        schedules.pause(connect(url), url, "missing")
