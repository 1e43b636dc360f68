"""The TrainJob launcher as a state machine, driven by the real kubernetes client against
recorded-shape API responses served on loopback (ReplayApiServer in conftest.py)."""

from __future__ import annotations

import pytest
from conftest import recorded

from diffucoder.config import load_config
from diffucoder.k8s.config import KubernetesConfig
from diffucoder.k8s.launcher import (
    TrainJobFailed,
    TrainJobLauncher,
    TrainJobTimeout,
    job_state,
    launch_trainjob,
)
from diffucoder.k8s.trainjob import StageJob, build_trainjob

NS = "diffucoder"
NAME = "diffucoder-run-7f3a9c-pretrain"
JOB = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs/{NAME}"
JOBS = f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs"
CMS = f"/api/v1/namespaces/{NS}/configmaps"


@pytest.fixture(scope="module")
def objs():
    job = StageJob("pretrain", "s3://b/packed", "s3://b/runs/x/pretrain", run_id="run-7f3a9c")
    out = build_trainjob(job, load_config("tiny"), KubernetesConfig())
    assert out.name == NAME
    return out


def _launcher(apiserver, **kw):
    return TrainJobLauncher(apiserver.api_client(), NS, poll_interval_s=0.0, sleep=lambda s: None, **kw)


def _script_create(apiserver, api_status):
    apiserver.script(
        "POST", CMS, (201, {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": NAME}})
    )
    apiserver.script("POST", JOBS, (201, recorded("trainjob_created.json")))
    apiserver.script(
        "PATCH", f"{CMS}/{NAME}", (200, {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": NAME}})
    )


def test_recorded_responses_match_the_crd(crds):
    for name in ("created", "running", "suspended", "complete", "failed"):
        assert crds.errors(recorded(f"trainjob_{name}.json")) == [], name


@pytest.mark.parametrize(
    "snapshot, phase",
    [
        ("created", "pending"),
        ("running", "running"),
        ("suspended", "suspended"),
        ("complete", "complete"),
        ("failed", "failed"),
    ],
)
def test_job_state_reads_conditions(snapshot, phase):
    assert job_state(recorded(f"trainjob_{snapshot}.json")).phase == phase


def test_create_then_follow_to_complete(apiserver, api_status, objs):
    apiserver.script(
        "GET",
        JOB,
        (404, api_status(404, "NotFound", "not found")),
        (200, recorded("trainjob_created.json")),
        (200, recorded("trainjob_running.json")),
        (200, recorded("trainjob_complete.json")),
    )
    _script_create(apiserver, api_status)
    outcome = launch_trainjob(objs, _launcher(apiserver), timeout_s=60)
    assert outcome.state.phase == "complete" and outcome.state.reason == "JobsCompleted"
    assert not outcome.reattached
    # the config went first, then the job exactly as built, then the config became the job's child
    order = [(m, p) for m, p, _ in apiserver.requests if m != "GET"]
    assert order == [("POST", CMS), ("POST", JOBS), ("PATCH", f"{CMS}/{NAME}")]
    assert apiserver.calls("POST", JOBS)[0][2] == objs.trainjob
    owner = apiserver.calls("PATCH")[0][2]["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "name": NAME,
        "uid": recorded("trainjob_created.json")["metadata"]["uid"],
    }


def test_failed_job_raises_with_the_controllers_reason(apiserver, api_status, objs):
    apiserver.script(
        "GET",
        JOB,
        (404, api_status(404, "NotFound", "x")),
        (200, recorded("trainjob_running.json")),
        (200, recorded("trainjob_failed.json")),
    )
    _script_create(apiserver, api_status)
    with pytest.raises(
        TrainJobFailed, match="FailedJobs: jobset failed: child Job node-1 reached BackoffLimitExceeded"
    ) as info:
        launch_trainjob(objs, _launcher(apiserver), timeout_s=60)
    assert info.value.reason == "FailedJobs"


def test_retry_reattaches_to_a_running_job(apiserver, objs):
    apiserver.script(
        "GET", JOB, (200, recorded("trainjob_running.json")), (200, recorded("trainjob_complete.json"))
    )
    outcome = launch_trainjob(objs, _launcher(apiserver), timeout_s=60)
    assert outcome.reattached and outcome.state.phase == "complete"
    assert apiserver.calls("POST") == []  # no duplicate GPU job


def test_retry_recreates_a_failed_job(apiserver, api_status, objs):
    apiserver.script(
        "GET",
        JOB,
        (200, recorded("trainjob_failed.json")),
        (404, api_status(404, "NotFound", "gone")),
        (200, recorded("trainjob_created.json")),
        (200, recorded("trainjob_complete.json")),
    )
    apiserver.script("DELETE", JOB, (200, api_status(200, "", "deleted")))
    _script_create(apiserver, api_status)
    outcome = launch_trainjob(objs, _launcher(apiserver), timeout_s=60)
    assert outcome.state.phase == "complete" and not outcome.reattached
    methods = [m for m, p, _ in apiserver.requests if p in (JOB, JOBS)]
    assert methods.index("DELETE") < methods.index("POST")
    deletes = [q for (m, _, _), q in zip(apiserver.requests, apiserver.queries, strict=True) if m == "DELETE"]
    assert deletes == [{"propagationPolicy": "Foreground"}]


def test_suspended_past_the_timeout_is_deleted_and_reported(apiserver, api_status, objs):
    ticks = iter(range(0, 10_000, 10))
    apiserver.script(
        "GET",
        JOB,
        (404, api_status(404, "NotFound", "x")),
        (200, recorded("trainjob_suspended.json")),
        (200, recorded("trainjob_suspended.json")),
        (200, recorded("trainjob_suspended.json")),
        (404, api_status(404, "NotFound", "gone")),
    )
    apiserver.script("DELETE", JOB, (200, api_status(200, "", "deleted")))
    _script_create(apiserver, api_status)
    launcher = _launcher(apiserver, clock=lambda: next(ticks))
    with pytest.raises(TrainJobTimeout, match="still suspended after 25s .Suspended: TrainJob is suspended"):
        launch_trainjob(objs, launcher, timeout_s=25)
    assert len(apiserver.calls("DELETE")) == 1


def test_rejected_create_names_the_job_and_the_webhook_message(apiserver, api_status, objs):
    apiserver.script("GET", JOB, (404, api_status(404, "NotFound", "x")))
    apiserver.script(
        "POST", CMS, (201, {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": NAME}})
    )
    msg = 'admission webhook "validate.trainjob.trainer.kubeflow.org" denied the request: runtime not found'
    apiserver.script("POST", JOBS, (422, api_status(422, "Invalid", msg)))
    with pytest.raises(RuntimeError, match=rf"creating TrainJob {NS}/{NAME}: HTTP 422.*runtime not found"):
        launch_trainjob(objs, _launcher(apiserver), timeout_s=60)


def test_interrupt_deletes_the_job(apiserver, api_status, objs):
    def interrupted(_s):
        raise KeyboardInterrupt  # what the CLI's SIGTERM handler raises when Argo cancels the run

    apiserver.script(
        "GET",
        JOB,
        (404, api_status(404, "NotFound", "x")),
        (200, recorded("trainjob_running.json")),
        (404, api_status(404, "NotFound", "gone")),
    )
    apiserver.script("DELETE", JOB, (200, api_status(200, "", "deleted")))
    _script_create(apiserver, api_status)
    launcher = TrainJobLauncher(apiserver.api_client(), NS, poll_interval_s=0.0, sleep=interrupted)
    with pytest.raises(KeyboardInterrupt):
        launch_trainjob(objs, launcher, timeout_s=60)
    assert len(apiserver.calls("DELETE", JOB)) == 1
