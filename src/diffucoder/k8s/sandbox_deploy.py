"""The hardened sandbox Deployment + Service: built here, used by the manifests and per pipeline run.

One builder serves both uses, so they cannot drift: manifests/base/sandbox/deployment.yaml (the
Deployment and its Service) is this module's output for the shared service (a test compares; regenerate:
``python -m diffucoder.k8s.sandbox_deploy render``), and :class:`SandboxDeployer` creates a private
copy per pipeline run (label ``diffucoder.io/run-id``) and deletes it when the run ends.

Pod hardening (docs/sandbox.md): restricted Pod Security (non-root, no privilege escalation,
all capabilities dropped, seccomp RuntimeDefault), read-only root filesystem with a memory-backed
/tmp, no service-account token, no service links, requests == limits (Guaranteed QoS). Network
isolation is the namespace's NetworkPolicies (no egress at all; ingress only from pods labelled
``diffucoder.io/sandbox-client``), which select every pod here by ``app.kubernetes.io/name``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from diffucoder.images import IMAGE_UIDS, image_ref
from diffucoder.k8s.config import KubernetesConfig, SandboxDeployConfig

log = logging.getLogger(__name__)

APP = "diffucoder-sandbox"
PORT = 8080
UID = IMAGE_UIDS["sandbox"]  # a uid of its own (diffucoder.images says why)
SHARED_NAME = APP


def _selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": name}


def _labels(name: str, run_id: str | None) -> dict[str, str]:
    labels = _selector(name) | {"app.kubernetes.io/part-of": "diffucoder"}
    if run_id:
        labels["diffucoder.io/run-id"] = run_id
    return labels


def _cores(cpu: str) -> int:
    """Executor slots per pod = whole CPUs of its limit (each slot runs one program at a time)."""
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, int(cores))


def build_deployment(
    name: str, namespace: str, image: str, cfg: SandboxDeployConfig, run_id: str | None = None
) -> dict[str, Any]:
    """The sandbox Deployment (shared service when ``run_id`` is None, else one run's copy)."""
    amounts = {"cpu": cfg.cpu, "memory": cfg.memory, "ephemeral-storage": "1Gi"}
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "priorityClassName": "diffucoder-training",  # GRPO blocks on rewards: same priority as training
        "terminationGracePeriodSeconds": 60,  # longer than any per-program wall limit
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "sandbox",
                "image": image,
                "args": ["--host", "0.0.0.0", "--port", str(PORT), "--workers", str(_cores(cfg.cpu))],
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "env": [
                    {"name": "OMP_NUM_THREADS", "value": "1"},
                    {"name": "OPENBLAS_NUM_THREADS", "value": "1"},
                    {"name": "TMPDIR", "value": "/tmp"},
                ],
                "resources": {"requests": dict(amounts), "limits": dict(amounts)},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 20,
                    "failureThreshold": 6,
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "privileged": False,
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.tmp_size}}],
    }
    if cfg.runtime_class:
        pod_spec["runtimeClassName"] = cfg.runtime_class
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(name, run_id)},
        "spec": {
            "replicas": cfg.replicas,
            "selector": {"matchLabels": _selector(name)},
            "template": {"metadata": {"labels": _labels(name, run_id)}, "spec": pod_spec},
        },
    }


def build_service(name: str, namespace: str, run_id: str | None = None) -> dict[str, Any]:
    """ClusterIP Service in front of the sandbox pods (never exposed outside the cluster)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(name, run_id)},
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(name),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_url(name: str, namespace: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local:{PORT}"


def run_sandbox_name(run_id: str) -> str:
    """Per-run object name, DNS-1035 and short enough for pod names derived from it."""
    slug = "".join(c if c.isalnum() else "-" for c in run_id.lower()).strip("-")[:20].strip("-")
    if not slug:
        raise ValueError(f"run_id {run_id!r} has no letters or digits to name a sandbox with")
    return f"sandbox-{slug}"


class SandboxDeployer:
    """Creates, awaits and deletes one pipeline run's sandbox Deployment + Service."""

    def __init__(
        self,
        api_client: client.ApiClient,
        k8s: KubernetesConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        poll_interval_s: float = 2.0,
    ):
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.k8s = k8s
        self.namespace = k8s.sandbox_namespace
        self.sleep, self.clock, self.poll_interval_s = sleep, clock, poll_interval_s

    def up(self, run_id: str) -> str:
        """Create (or reuse) the run's sandbox, wait until every replica is ready, return its URL."""
        name = run_sandbox_name(run_id)
        image = image_ref("sandbox", self.k8s.image_registry, self.k8s.image_tag)
        deployment = build_deployment(name, self.namespace, image, self.k8s.sandbox, run_id=run_id)
        self._create(self.apps.create_namespaced_deployment, deployment)
        self._create(self.core.create_namespaced_service, build_service(name, self.namespace, run_id))
        self._wait_ready(name, self.k8s.sandbox.replicas, self.k8s.sandbox.ready_timeout_s)
        return service_url(name, self.namespace)

    def down(self, run_id: str) -> None:
        """Delete the run's Service and Deployment; absent objects are fine (idempotent)."""
        name = run_sandbox_name(run_id)
        for kind, delete in (
            ("Service", self.core.delete_namespaced_service),
            ("Deployment", self.apps.delete_namespaced_deployment),
        ):
            try:
                delete(name, self.namespace, propagation_policy="Foreground")
            except ApiException as exc:
                if exc.status != 404:
                    raise RuntimeError(
                        f"deleting {kind} {self.namespace}/{name}: HTTP {exc.status} {exc.reason}"
                    ) from exc

    def _create(self, create: Callable[..., Any], obj: dict[str, Any]) -> None:
        what = f"{obj['kind']} {self.namespace}/{obj['metadata']['name']}"
        try:
            create(self.namespace, obj)
            log.info("created %s", what)
        except ApiException as exc:
            if exc.status != 409:
                raise RuntimeError(
                    f"creating {what}: HTTP {exc.status} {exc.reason}: {(exc.body or '')[:300]}"
                ) from exc
            log.info("%s exists already; reusing it", what)

    def _wait_ready(self, name: str, replicas: int, timeout_s: float) -> None:
        deadline = self.clock() + timeout_s
        while True:
            status = self.apps.read_namespaced_deployment_status(name, self.namespace).status
            ready = (status.ready_replicas or 0) if status else 0
            if ready >= replicas:
                return
            if self.clock() >= deadline:
                conditions = (
                    "; ".join(
                        f"{c.type}={c.status} {c.reason}: {c.message}" for c in (status.conditions or [])
                    )
                    if status
                    else ""
                )
                raise TimeoutError(
                    f"sandbox Deployment {self.namespace}/{name}: {ready}/{replicas} replicas ready "
                    f"after {timeout_s:.0f}s ({conditions or 'no conditions'})"
                )
            self.sleep(self.poll_interval_s)


def render_shared(k8s: KubernetesConfig | None = None) -> str:
    """YAML of the shared sandbox Deployment and Service (manifests/base/sandbox/)."""
    k8s = k8s or KubernetesConfig()
    image = image_ref("sandbox", k8s.image_registry, k8s.image_tag)
    objs = [
        build_deployment(SHARED_NAME, k8s.sandbox_namespace, image, k8s.sandbox),
        build_service(SHARED_NAME, k8s.sandbox_namespace),
    ]
    header = (
        "# Generated by `python -m diffucoder.k8s.sandbox_deploy render`; edit the builder, not this file.\n"
    )
    return header + yaml.safe_dump_all(objs, sort_keys=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffucoder.k8s.sandbox_deploy")
    parser.add_argument(
        "command", choices=["render"], help="print the shared sandbox Deployment + Service YAML"
    )
    parser.parse_args(argv)
    sys.stdout.write(render_shared())
    return 0


if __name__ == "__main__":
    sys.exit(main())
