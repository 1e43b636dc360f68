"""Create a stage's TrainJob on the cluster and follow it until it completes or fails.

The KFP launcher component calls :func:`launch_trainjob`; it blocks while the TrainJob runs and
raises with the job's own reason and message when it fails, so the pipeline task fails loudly.

Retry-safe: the job name is deterministic, so a retried launcher first reads
the job: a running one is re-attached, a completed one is reported done, a failed one is deleted
and created afresh (training resumes from its newest checkpoint with ``--resume auto``).
The resolved-config ConfigMap is made a child of the TrainJob (ownerReference), so deleting the
job garbage-collects it.

State is read from ``status.conditions`` (Trainer v2.3 types ``Complete``, ``Failed``,
``Suspended``; any other type, e.g. ``Created``, is progress information only).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from diffucoder.k8s.trainjob import API_GROUP, API_VERSION, PLURAL, TrainJobObjects

log = logging.getLogger(__name__)

Phase = Literal["pending", "running", "suspended", "complete", "failed"]


class TrainJobFailed(RuntimeError):
    """The TrainJob reached Failed; carries the controller's reason and message."""

    def __init__(self, name: str, reason: str, message: str):
        super().__init__(f"TrainJob {name} failed: {reason or 'no reason given'}: {message or 'no message'}")
        self.name, self.reason, self.message = name, reason, message


class TrainJobTimeout(TimeoutError):
    """The launcher stopped following a TrainJob that had not finished in time."""


@dataclass(frozen=True)
class JobState:
    """What the launcher concluded from one status read."""

    phase: Phase
    reason: str = ""
    message: str = ""


def job_state(obj: dict[str, Any]) -> JobState:
    """Classify a TrainJob object by its conditions (terminal ones win over Suspended)."""
    conditions = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}

    def true(kind: str) -> dict[str, Any] | None:
        cond = conditions.get(kind)
        return cond if cond and cond.get("status") == "True" else None

    for kind, phase in (("Failed", "failed"), ("Complete", "complete"), ("Suspended", "suspended")):
        cond = true(kind)
        if cond:
            return JobState(phase, cond.get("reason", ""), cond.get("message", ""))
    jobs = (obj.get("status") or {}).get("jobsStatus") or []
    if any((j.get("active") or 0) + (j.get("ready") or 0) > 0 for j in jobs):
        return JobState("running")
    return JobState("pending")


@dataclass(frozen=True)
class TrainJobOutcome:
    name: str
    state: JobState
    seconds: float
    reattached: bool


class TrainJobLauncher:
    """Get-or-create a TrainJob and follow its conditions; ``sleep``/``clock`` injectable for tests."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        poll_interval_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.poll_interval_s = poll_interval_s
        self.sleep, self.clock = sleep, clock

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _api_error(f"reading TrainJob {self.namespace}/{name}", exc) from exc

    def delete(self, name: str, wait_s: float = 300.0) -> None:
        """Delete the job (foreground, so its pods go first) and wait until it is gone."""
        try:
            self.custom.delete_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, PLURAL, name, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise _api_error(f"deleting TrainJob {self.namespace}/{name}", exc) from exc
        deadline = self.clock() + wait_s
        while self.get(name) is not None:
            if self.clock() > deadline:
                raise TrainJobTimeout(
                    f"TrainJob {self.namespace}/{name} still exists {wait_s:.0f}s after delete"
                )
            self.sleep(min(self.poll_interval_s, 5.0))

    def submit(self, objs: TrainJobObjects) -> bool:
        """Create the config and the job unless a usable job exists; True if re-attached."""
        existing = self.get(objs.name)
        if existing is not None:
            state = job_state(existing)
            if state.phase != "failed":
                log.info("re-attaching to TrainJob %s (%s)", objs.name, state.phase)
                return True
            log.warning(
                "TrainJob %s failed before (%s: %s); recreating it", objs.name, state.reason, state.message
            )
            self.delete(objs.name)
        self._apply_config_map(objs.config_map)
        try:
            created = self.custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, PLURAL, objs.trainjob
            )
        except ApiException as exc:
            raise _api_error(f"creating TrainJob {self.namespace}/{objs.name}", exc) from exc
        self._adopt_config_map(objs.config_map["metadata"]["name"], created)
        log.info("created TrainJob %s/%s", self.namespace, objs.name)
        return False

    def wait(self, name: str, timeout_s: float) -> JobState:
        """Poll until Complete (returned) or Failed (raised); log every phase change."""
        deadline = self.clock() + timeout_s
        last: JobState | None = None
        while True:
            obj = self.get(name)
            if obj is None:
                raise TrainJobFailed(
                    name, "Deleted", "the TrainJob disappeared while the launcher followed it"
                )
            state = job_state(obj)
            if state != last:
                log.info("TrainJob %s: %s %s %s", name, state.phase, state.reason, state.message)
                last = state
            if state.phase == "complete":
                return state
            if state.phase == "failed":
                raise TrainJobFailed(name, state.reason, state.message)
            if self.clock() >= deadline:
                raise TrainJobTimeout(
                    f"TrainJob {self.namespace}/{name} still {state.phase} after {timeout_s:.0f}s"
                    + (f" ({state.reason}: {state.message})" if state.reason else "")
                )
            self.sleep(self.poll_interval_s)

    def _apply_config_map(self, config_map: dict[str, Any]) -> None:
        name = config_map["metadata"]["name"]
        try:
            self.core.create_namespaced_config_map(self.namespace, config_map)
        except ApiException as exc:
            if exc.status != 409:
                raise _api_error(f"creating ConfigMap {self.namespace}/{name}", exc) from exc
            # Left over from an earlier attempt: the config of this attempt wins.
            self.core.replace_namespaced_config_map(name, self.namespace, config_map)

    def _adopt_config_map(self, name: str, owner: dict[str, Any]) -> None:
        ref = {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
        }
        try:
            self.core.patch_namespaced_config_map(
                name, self.namespace, {"metadata": {"ownerReferences": [ref]}}
            )
        except ApiException as exc:
            raise _api_error(f"setting the owner of ConfigMap {self.namespace}/{name}", exc) from exc


def _api_error(action: str, exc: ApiException) -> RuntimeError:
    return RuntimeError(f"{action}: HTTP {exc.status} {exc.reason}: {(exc.body or '').strip()[:500]}")


def launch_trainjob(
    objs: TrainJobObjects, launcher: TrainJobLauncher, timeout_s: float, delete_on_timeout: bool = True
) -> TrainJobOutcome:
    """Submit (or re-attach to) a TrainJob and block until it completes.

    Raises:
        TrainJobFailed: the job failed; the message quotes the controller's reason and message.
        TrainJobTimeout: not finished within ``timeout_s``; the job is deleted first unless
            ``delete_on_timeout`` is False, so no GPU job outlives its launcher.
        KeyboardInterrupt: the launcher was interrupted (the CLI maps SIGTERM, which Argo sends
            when a run is cancelled, to this); the job is deleted before re-raising.
    """
    start = launcher.clock()
    reattached = launcher.submit(objs)
    try:
        state = launcher.wait(objs.name, timeout_s)
    except TrainJobTimeout:
        if delete_on_timeout:
            launcher.delete(objs.name)
        raise
    except KeyboardInterrupt:
        log.warning("interrupted: deleting TrainJob %s", objs.name)
        launcher.delete(objs.name)
        raise
    return TrainJobOutcome(objs.name, state, launcher.clock() - start, reattached)


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """In-cluster credentials inside a pod, else the kubeconfig (``$KUBECONFIG`` or ~/.kube/config)."""
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config(config_file=kubeconfig)
    return client.ApiClient()
