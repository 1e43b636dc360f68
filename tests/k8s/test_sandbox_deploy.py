"""Per-run sandbox Deployment + Service: same hardened pod as the shared manifest, created,
awaited and deleted through the real kubernetes client against a replaying loopback API server."""

from __future__ import annotations

import kubernetes_validate
import pytest
from conftest import REPO_ROOT

from diffucoder.images import REGISTRY_ENV
from diffucoder.k8s.config import KubernetesConfig
from diffucoder.k8s.sandbox_deploy import SandboxDeployer, build_deployment, render_shared, run_sandbox_name

NS = "diffucoder-sandbox"
RUN = "run-7f3a9c"
NAME = run_sandbox_name(RUN)
DEPS = f"/apis/apps/v1/namespaces/{NS}/deployments"
SVCS = f"/api/v1/namespaces/{NS}/services"


def test_shared_manifest_is_the_builders_output(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    committed = (REPO_ROOT / "manifests/base/sandbox/deployment.yaml").read_text()
    assert committed == render_shared(), (
        "regenerate: python -m diffucoder.k8s.sandbox_deploy render > manifests/base/sandbox/deployment.yaml"
    )


def test_per_run_deployment_is_valid_and_labelled():
    k8s = KubernetesConfig.model_validate({"sandbox": {"runtime_class": "gvisor", "replicas": 3}})
    dep = build_deployment(NAME, NS, "example.test/sandbox:1", k8s.sandbox, run_id=RUN)
    kubernetes_validate.validate(dep, kubernetes_validate.latest_version(), strict=True)
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"]["diffucoder.io/run-id"] == RUN
    # the namespace NetworkPolicies select sandbox pods by this label: per-run pods must carry it
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "diffucoder-sandbox"
    assert pod["spec"]["runtimeClassName"] == "gvisor" and dep["spec"]["replicas"] == 3


def _deployment_status(ready):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NS},
        "status": {
            "replicas": 2,
            "readyReplicas": ready,
            "conditions": [
                {
                    "type": "Available",
                    "status": "False",
                    "reason": "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability.",
                }
            ],
        },
    }


def test_up_creates_both_waits_for_ready_and_returns_the_url(apiserver):
    apiserver.script(
        "POST", DEPS, (201, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME}})
    )
    apiserver.script("POST", SVCS, (201, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME}}))
    apiserver.script(
        "GET",
        f"{DEPS}/{NAME}/status",
        (200, _deployment_status(0)),
        (200, _deployment_status(1)),
        (200, _deployment_status(2)),
    )
    deployer = SandboxDeployer(apiserver.api_client(), KubernetesConfig(), sleep=lambda s: None)
    url = deployer.up(RUN)
    assert url == f"http://{NAME}.{NS}.svc.cluster.local:8080"
    assert len(apiserver.calls("GET", f"{DEPS}/{NAME}/status")) == 3
    sent = apiserver.calls("POST", DEPS)[0][2]
    assert sent["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_up_reuses_existing_objects_and_times_out_with_the_conditions(apiserver, api_status):
    apiserver.script("POST", DEPS, (409, api_status(409, "AlreadyExists", "exists")))
    apiserver.script("POST", SVCS, (409, api_status(409, "AlreadyExists", "exists")))
    apiserver.script("GET", f"{DEPS}/{NAME}/status", (200, _deployment_status(1)))
    ticks = iter(range(0, 10_000, 100))
    deployer = SandboxDeployer(
        apiserver.api_client(), KubernetesConfig(), sleep=lambda s: None, clock=lambda: next(ticks)
    )
    with pytest.raises(TimeoutError, match=r"1/2 replicas ready after 600s .*MinimumReplicasUnavailable"):
        deployer.up(RUN)


def test_down_deletes_service_and_deployment_and_tolerates_absence(apiserver, api_status):
    apiserver.script("DELETE", f"{SVCS}/{NAME}", (200, api_status(200, "", "ok")))
    apiserver.script("DELETE", f"{DEPS}/{NAME}", (404, api_status(404, "NotFound", "gone")))
    SandboxDeployer(apiserver.api_client(), KubernetesConfig()).down(RUN)
    assert [m for m, _, _ in apiserver.requests] == ["DELETE", "DELETE"]


def test_create_errors_name_the_object(apiserver, api_status):
    apiserver.script(
        "POST", DEPS, (403, api_status(403, "Forbidden", "deployments.apps is forbidden: User cannot create"))
    )
    with pytest.raises(RuntimeError, match=rf"creating Deployment {NS}/{NAME}: HTTP 403.*forbidden"):
        SandboxDeployer(apiserver.api_client(), KubernetesConfig()).up(RUN)
