"""``docker run`` / ``podman run`` flags that reproduce one container of a rendered pod spec.

Why: the sandbox's hardening lives in its Deployment (non-root uid, read-only root, memory-backed
/tmp, no capabilities, no privilege escalation, RuntimeDefault seccomp). Running the image locally
with flags derived from that very manifest, not a second hand-written copy, tests the
configuration that runs model-written code in production. Every field of the security context is
either translated or rejected: a field added to the manifest later cannot be skipped silently.

Kubernetes -> engine: runAsUser/runAsGroup -> ``--user``; fsGroup -> ``--group-add`` (the kubelet
adds it as a supplementary group); readOnlyRootFilesystem ->
``--read-only --read-only-tmpfs=false`` (podman would otherwise add writable /tmp, /run, /var/tmp
that a pod does not have); allowPrivilegeEscalation=false -> ``no-new-privileges``; capabilities ->
``--cap-drop/--cap-add``; seccomp RuntimeDefault -> the engine's default profile (podman's and
Docker's defaults are close to containerd's RuntimeDefault, not identical); emptyDir medium Memory
-> ``--tmpfs`` with its sizeLimit; CPU and memory limits -> ``--cpus``/``--memory``.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import yaml

_POD_KEYS = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "seccompProfile"}
_CONTAINER_KEYS = {
    "allowPrivilegeEscalation",
    "privileged",
    "readOnlyRootFilesystem",
    "runAsNonRoot",
    "runAsUser",
    "runAsGroup",
    "capabilities",
    "seccompProfile",
}
_BINARY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
_DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (``2Gi``, ``512M``, ``1000``) in bytes."""
    for units in (_BINARY, _DECIMAL):
        for suffix, factor in units.items():
            if quantity.endswith(suffix):
                return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


def quantity_cpus(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


class UnsupportedPodField(ValueError):
    """The pod spec asks for something these flags cannot reproduce."""


def container_run_flags(pod_spec: dict[str, Any], container_name: str, engine: str = "podman") -> list[str]:
    """Engine flags (everything between ``run`` and the image) for one container of ``pod_spec``;
    ``engine`` is ``podman`` or ``docker`` (whose ``--read-only`` adds no tmpfs of its own)."""
    container = next((c for c in pod_spec["containers"] if c["name"] == container_name), None)
    if container is None:
        raise UnsupportedPodField(f"no container {container_name!r} in the pod spec")
    pod_sc, ctr_sc = pod_spec.get("securityContext", {}), container.get("securityContext", {})
    for where, given, known in (("pod", pod_sc, _POD_KEYS), ("container", ctr_sc, _CONTAINER_KEYS)):
        unknown = set(given) - known
        if unknown:
            raise UnsupportedPodField(f"{where} securityContext fields not translated: {sorted(unknown)}")
    merged = {**pod_sc, **ctr_sc}  # container-level settings win, as in Kubernetes
    flags: list[str] = []

    uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
    if merged.get("runAsNonRoot") and (uid is None or int(uid) == 0):
        raise UnsupportedPodField("runAsNonRoot needs an explicit non-zero runAsUser to run locally")
    if uid is not None:
        flags += ["--user", f"{uid}:{gid if gid is not None else uid}"]
    fs_group = pod_sc.get("fsGroup")
    if fs_group is not None:
        flags += ["--group-add", str(fs_group)]

    seccomp = merged.get("seccompProfile", {"type": "RuntimeDefault"}).get("type")
    if seccomp != "RuntimeDefault":
        raise UnsupportedPodField(f"seccompProfile {seccomp!r}: only RuntimeDefault is reproduced")
    if merged.get("privileged"):
        raise UnsupportedPodField("privileged containers are not reproduced")
    if merged.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if merged.get("readOnlyRootFilesystem"):
        flags += ["--read-only", *(["--read-only-tmpfs=false"] if engine == "podman" else [])]
    caps = merged.get("capabilities", {})
    flags += [f"--cap-drop={c}" for c in caps.get("drop", [])]
    flags += [f"--cap-add={c}" for c in caps.get("add", [])]

    flags += _volume_flags(pod_spec, container)
    for env in container.get("env", []):
        if "value" not in env:
            raise UnsupportedPodField(f"env {env['name']}: only literal values are reproduced")
        flags += ["--env", f"{env['name']}={env['value']}"]
    limits = container.get("resources", {}).get("limits", {})
    if "cpu" in limits:
        flags += ["--cpus", f"{quantity_cpus(str(limits['cpu'])):g}"]
    if "memory" in limits:
        flags += ["--memory", str(quantity_bytes(str(limits["memory"])))]
    return flags


def _volume_flags(pod_spec: dict[str, Any], container: dict[str, Any]) -> list[str]:
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    flags = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        empty_dir = volume.get("emptyDir")
        if empty_dir is None or empty_dir.get("medium") != "Memory":
            raise UnsupportedPodField(f"volume {mount['name']}: only memory-backed emptyDirs are reproduced")
        # An emptyDir is world-writable (0777). Its fsGroup ownership (group fsGroup, setgid) is not
        # reproduced (podman's tmpfs takes no gid): files the process creates get its own gid anyway.
        options = ["rw", "exec", "mode=777"]
        if "sizeLimit" in empty_dir:
            options.append(f"size={quantity_bytes(str(empty_dir['sizeLimit']))}")
        flags += ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]
    return flags


def with_args(args: list[str], **values: object) -> list[str]:
    """The container's args with each ``--name value`` pair given in ``values`` replaced (or
    added): ``with_args(args, host="127.0.0.1", port=9)``."""
    flags = {f"--{name.replace('_', '-')}": str(value) for name, value in values.items()}
    out, skip = [], False
    for i, word in enumerate(args):
        if skip:
            skip = False
        elif word in flags and i + 1 < len(args):
            skip = True
        else:
            out.append(word)
    return [*out, *(w for pair in flags.items() for w in pair)]


def shared_sandbox_pod() -> dict[str, Any]:
    """The pod template of the shared sandbox Deployment, as manifests/base/sandbox renders it."""
    from diffucoder.k8s.sandbox_deploy import render_shared

    deployment = next(d for d in yaml.safe_load_all(render_shared()) if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


@contextlib.contextmanager
def sandbox_container(
    engine: str,
    image: str,
    *,
    port: int,
    env: dict[str, str] | None = None,
    name: str | None = None,
    workers: int | None = None,
    ready_timeout_s: float = 90,
) -> Iterator[tuple[str, str]]:
    """Run the sandbox image on this host's loopback exactly as its pod runs it (security context,
    /tmp, env, limits and args from the rendered Deployment; only the listen address differs, and
    the worker count where ``workers`` is given); yields (url, container id) once /healthz
    answers, and removes the container afterwards.

    ``--network=host``: the server listens on the host's 127.0.0.1, as the tests and local
    pipeline steps reach it; model-written code gets no network either way (its seccomp filter)."""
    pod = shared_sandbox_pod()
    container = next(c for c in pod["containers"] if c["name"] == "sandbox")
    flags = container_run_flags(pod, "sandbox", engine)
    extra = [w for key, value in (env or {}).items() for w in ("--env", f"{key}={value}")]
    listen_extra = {"workers": workers} if workers else {}
    cmd = [
        engine, "run", "--detach", "--network=host", *(["--name", name] if name else []), *flags, *extra,
        image, *with_args(container.get("args", []), host="127.0.0.1", port=port, **listen_extra),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} run {image} failed: {proc.stderr.strip()[-800:]}")
    cid = proc.stdout.strip().splitlines()[-1]
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(engine, cid, url, ready_timeout_s)
        yield url, cid
    finally:
        subprocess.run([engine, "stop", "--time", "10", cid], capture_output=True)
        subprocess.run([engine, "rm", "--force", cid], capture_output=True)


def _wait_healthy(engine: str, cid: str, url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        state = subprocess.run(
            [engine, "inspect", "--format", "{{.State.Running}}", cid], capture_output=True, text=True
        ).stdout.strip()
        if state == "false":
            break
        time.sleep(0.5)
    logs = subprocess.run([engine, "logs", cid], capture_output=True, text=True)
    raise RuntimeError(
        f"sandbox container {cid[:12]} never became healthy at {url}: {(logs.stdout + logs.stderr)[-1500:]}"
    )
