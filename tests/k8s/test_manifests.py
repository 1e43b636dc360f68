"""The kustomize tree: every overlay builds, validates, and keeps our security and wiring policies."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml
from conftest import OVERLAYS, REPO_ROOT, render_kustomization

from diffucoder.images import IMAGE_UIDS, IMAGES, image_ref

K8S_VERSION = kubernetes_validate.latest_version()
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet")
SANDBOX_NS = "diffucoder-sandbox"


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec an object would create, including those inside a training runtime."""
    if obj["kind"] in WORKLOAD_KINDS:
        return [obj["spec"]["template"]["spec"]]
    if obj["kind"] in ("ClusterTrainingRuntime", "TrainingRuntime"):
        return [
            rj["template"]["spec"]["template"]["spec"]
            for rj in obj["spec"]["template"]["spec"]["replicatedJobs"]
        ]
    return []


def find(objs, kind, name=None, namespace=None):
    return [
        o
        for o in objs
        if o["kind"] == kind
        and name in (None, o["metadata"]["name"])
        and namespace in (None, o["metadata"].get("namespace"))
    ]


@pytest.fixture(params=OVERLAYS)
def overlay(request, rendered):
    return request.param, rendered[request.param]


def test_base_and_every_overlay_build(rendered):
    assert render_kustomization(REPO_ROOT / "manifests" / "base")
    for name in OVERLAYS:
        kinds = {o["kind"] for o in rendered[name]}
        assert {
            "Namespace",
            "Deployment",
            "NetworkPolicy",
            "ClusterTrainingRuntime",
            "PriorityClass",
        } <= kinds, name


def test_core_objects_pass_kubernetes_validate_strict(overlay):
    name, objs = overlay
    checked = 0
    for obj in objs:
        if obj["apiVersion"].startswith("trainer.kubeflow.org/"):
            continue  # custom resources: validated against their CRDs below
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 20


def test_strict_validation_is_not_vacuous(rendered):
    deployment = copy.deepcopy(find(rendered["local"], "Deployment", "mlflow")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # typo of volumeMounts
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_training_runtimes_validate_against_the_crds(overlay, crds):
    name, objs = overlay
    custom = [o for o in objs if o["apiVersion"].startswith("trainer.kubeflow.org/")]
    assert custom, name
    for obj in custom:
        assert crds.errors(obj) == [], f"{name}: {obj['kind']}/{obj['metadata']['name']}"


def test_every_container_has_resources_runs_non_root_without_escalation(overlay):
    name, objs = overlay
    seen = 0
    for obj in objs:
        for spec in pod_specs(obj):
            pod_ctx = spec.get("securityContext", {})
            for c in spec.get("initContainers", []) + spec["containers"]:
                where = f"{name}: {obj['kind']}/{obj['metadata']['name']} container {c['name']}"
                res = c.get("resources", {})
                assert {"cpu", "memory"} <= set(res.get("requests", {})), f"{where}: cpu/memory requests"
                assert {"cpu", "memory"} <= set(res.get("limits", {})), f"{where}: cpu/memory limits"
                ctx = c.get("securityContext", {})
                assert ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
                assert ctx.get("runAsUser", pod_ctx.get("runAsUser", 1)) != 0, f"{where}: runs as uid 0"
                assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
                assert not ctx.get("privileged", False), f"{where}: privileged"
                assert ctx.get("capabilities", {}).get("drop") == ["ALL"], (
                    f"{where}: capabilities not dropped"
                )
                seen += 1
    assert seen >= 3


def test_sandbox_is_restricted_and_read_only(overlay):
    name, objs = overlay
    ns = find(objs, "Namespace", SANDBOX_NS)[0]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    sandboxes = find(objs, "Deployment", namespace=SANDBOX_NS)
    assert sandboxes, name
    for dep in sandboxes:
        spec = dep["spec"]["template"]["spec"]
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["resources"]["requests"] == c["resources"]["limits"]  # Guaranteed QoS
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])
        tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
        assert tmp["emptyDir"]["medium"] == "Memory"
        args = spec["containers"][0]["args"]
        cpu = spec["containers"][0]["resources"]["limits"]["cpu"]
        assert args[args.index("--workers") + 1] == cpu, f"{name}: one executor slot per CPU"
    assert find(objs, "HorizontalPodAutoscaler", "diffucoder-sandbox", SANDBOX_NS)
    assert find(objs, "PodDisruptionBudget", "diffucoder-sandbox", SANDBOX_NS)


def test_sandbox_has_no_egress_and_ingress_only_from_pipeline_pods(overlay):
    name, objs = overlay
    policies = find(objs, "NetworkPolicy", namespace=SANDBOX_NS)
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and "Egress" in p["spec"]["policyTypes"]]
    assert deny and not deny[0]["spec"].get("egress") and not deny[0]["spec"].get("ingress"), name
    for p in policies:
        assert not p["spec"].get("egress"), f"{name}: {p['metadata']['name']} allows egress from the sandbox"
        for rule in p["spec"].get("ingress", []):
            for peer in rule["from"]:
                assert "ipBlock" not in peer
                assert peer["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "diffucoder"
                }
                assert peer["podSelector"]["matchLabels"] == {"diffucoder.io/sandbox-client": "true"}
    # no Service in the sandbox namespace leaves the cluster
    for svc in find(objs, "Service", namespace=SANDBOX_NS):
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_mlflow_is_not_exposed_outside_the_namespace(overlay):
    name, objs = overlay
    assert not [o for o in objs if o["kind"] in ("Ingress", "Gateway", "HTTPRoute", "Route")], name
    services = [
        s
        for s in find(objs, "Service")
        if s["spec"].get("selector", {}).get("app.kubernetes.io/name") == "mlflow"
    ]
    assert services and all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)
    assert all("externalIPs" not in s["spec"] for s in services)
    policies = [
        p
        for p in find(objs, "NetworkPolicy", namespace="diffucoder")
        if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "mlflow"
    ]
    assert policies and "Ingress" in policies[0]["spec"]["policyTypes"]
    for rule in policies[0]["spec"]["ingress"]:
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, (
                f"{name}: MLflow ingress peer {peer} reaches beyond the namespace"
            )


def test_mlflow_allows_its_service_host_names(overlay):
    _, objs = overlay
    args = find(objs, "Deployment", "mlflow")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    allowed = next(a for a in args if a.startswith("--allowed-hosts=")).split("=", 1)[1].split(",")
    svc = find(objs, "Service", "mlflow")[0]["metadata"]
    assert f"mlflow.{svc['namespace']}.svc.cluster.local:*" in allowed and "mlflow:*" in allowed


def test_kfp_launcher_endpoint_matches_the_s3_secret(overlay):
    name, objs = overlay
    cm = find(objs, "ConfigMap", "kfp-launcher", "diffucoder")[0]["data"]
    s3 = yaml.safe_load(cm["providers"])["s3"]["default"]
    secret = find(objs, "Secret", "diffucoder-s3", "diffucoder")[0]
    endpoint = base64.b64decode(secret["data"]["AWS_ENDPOINT_URL"]).decode()
    url = urlparse(endpoint)
    assert s3["endpoint"] in (url.netloc, url.hostname), f"{name}: {s3['endpoint']} vs {endpoint}"
    assert s3["disableSSL"] == (url.scheme == "http"), name
    assert cm["defaultPipelineRoot"].startswith("s3://")


def test_our_images_are_this_releases_refs(overlay):
    name, objs = overlay
    ours = {image_ref(n) for n in IMAGES}
    for obj in objs:
        for spec in pod_specs(obj):
            for c in spec["containers"]:
                if "diffucoder-" in c["image"]:
                    assert c["image"] in ours, (
                        f"{name}: {obj['metadata']['name']} uses {c['image']}, release is {ours}"
                    )


def test_our_images_run_as_their_images_uid(overlay):
    """Every pod of ours runs as its image's own uid; the sandbox's is shared with no other image
    (RLIMIT_NPROC counts a uid's processes node-wide, diffucoder.images.IMAGE_UIDS)."""
    name, objs = overlay
    image_of = {image_ref(n): n for n in IMAGES}
    seen = set()
    for obj in objs:
        for spec in pod_specs(obj):
            for c in spec["containers"]:
                if c["image"] in image_of:
                    ctx = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
                    uid = IMAGE_UIDS[image_of[c["image"]]]
                    assert (ctx.get("runAsUser"), ctx.get("runAsGroup")) == (uid, uid), (
                        f"{name}: {obj['metadata']['name']}/{c['name']} runs {c['image']} as {ctx}"
                    )
                    seen.add(image_of[c["image"]])
    assert {"sandbox", "trainer"} <= seen, f"{name}: no sandbox or trainer pod found"
    assert IMAGE_UIDS["sandbox"] not in {uid for n, uid in IMAGE_UIDS.items() if n != "sandbox"}


def test_gpu_pool_parameters_reach_the_runtime(rendered):
    params = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "manifests/overlays/gpu-cloud/gpu-pool.env").read_text().split()
    )
    runtime = find(rendered["gpu-cloud"], "ClusterTrainingRuntime")[0]
    pod = pod_specs(runtime)[0]
    expr = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]
    assert (expr["key"], expr["values"]) == (params["GPU_NODE_LABEL_KEY"], [params["GPU_NODE_LABEL_VALUE"]])
    assert pod["tolerations"] == [
        {"key": params["GPU_TAINT_KEY"], "operator": "Exists", "effect": params["GPU_TAINT_EFFECT"]}
    ]
    assert not find(rendered["gpu-cloud"], "ConfigMap", "gpu-pool")  # parameters only, not deployed
    assert (
        "affinity" not in pod_specs(find(rendered["local"], "ClusterTrainingRuntime")[0])[0]
    )  # local is CPU-only


def test_pipeline_service_account_may_run_trainjobs_and_sandboxes(overlay):
    _, objs = overlay

    def granted(ns, group, resource, verb):
        roles = {
            (r["metadata"].get("namespace"), r["metadata"]["name"]): r
            for r in objs
            if r["kind"] in ("Role", "ClusterRole")
        }
        for b in objs:
            if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
                continue
            if not any(
                s["kind"] == "ServiceAccount" and s["name"] == "diffucoder-pipeline" for s in b["subjects"]
            ):
                continue
            if b["kind"] == "RoleBinding" and b["metadata"]["namespace"] != ns and ns is not None:
                continue
            role = roles[
                (
                    b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None,
                    b["roleRef"]["name"],
                )
            ]
            for rule in role["rules"]:
                if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]:
                    return True
        return False

    for verb in ("create", "get", "watch", "delete"):
        assert granted("diffucoder", "trainer.kubeflow.org", "trainjobs", verb)
        assert granted(SANDBOX_NS, "apps", "deployments", verb)
        assert granted(SANDBOX_NS, "", "services", verb)
    assert granted(None, "trainer.kubeflow.org", "clustertrainingruntimes", "get")
    assert not granted("diffucoder", "", "secrets", "get")
    assert not granted(SANDBOX_NS, "apps", "deployments", "escalate")


def test_placeholder_credentials_only_in_the_base(rendered):
    base = render_kustomization(REPO_ROOT / "manifests" / "base")
    secret = find(base, "Secret", "diffucoder-s3")[0]
    assert base64.b64decode(secret["data"]["AWS_SECRET_ACCESS_KEY"]).decode() == "REPLACE_ME"
    local = find(rendered["local"], "Secret", "diffucoder-s3")[0]
    assert base64.b64decode(local["data"]["AWS_SECRET_ACCESS_KEY"]).decode() != "REPLACE_ME"


def _secret(objs, name, key):
    return base64.b64decode(find(objs, "Secret", name, "diffucoder")[0]["data"][key]).decode()


def test_local_in_cluster_stores_use_the_credentials_clients_get(rendered):
    objs = rendered["local"]
    identity = json.loads(_secret(objs, "seaweedfs-s3-config", "s3.json"))["identities"][0]["credentials"][0]
    assert identity == {
        "accessKey": _secret(objs, "diffucoder-s3", "AWS_ACCESS_KEY_ID"),
        "secretKey": _secret(objs, "diffucoder-s3", "AWS_SECRET_ACCESS_KEY"),
    }
    db = urlparse(_secret(objs, "diffucoder-mlflow-db", "MLFLOW_BACKEND_STORE_URI"))
    assert (db.username, db.password, db.path.lstrip("/")) == (
        _secret(objs, "diffucoder-postgres", "POSTGRES_USER"),
        _secret(objs, "diffucoder-postgres", "POSTGRES_PASSWORD"),
        _secret(objs, "diffucoder-postgres", "POSTGRES_DB"),
    )
    assert db.hostname == "postgres.diffucoder.svc.cluster.local" and find(
        objs, "Service", "postgres", "diffucoder"
    )
