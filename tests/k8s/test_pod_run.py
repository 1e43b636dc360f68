"""The engine flags derived from the sandbox's rendered pod (what `make test-images` runs it with)."""

from __future__ import annotations

import copy

import pytest

from diffucoder.k8s.pod_run import (
    UnsupportedPodField,
    container_run_flags,
    quantity_bytes,
    shared_sandbox_pod,
    with_args,
)
from diffucoder.k8s.sandbox_deploy import UID


def test_the_sandbox_pod_becomes_its_hardened_run_flags():
    pod = shared_sandbox_pod()
    size = quantity_bytes(pod["volumes"][0]["emptyDir"]["sizeLimit"])
    assert container_run_flags(pod, "sandbox", "podman") == [
        "--user", f"{UID}:{UID}", "--group-add", str(UID),
        "--security-opt", "no-new-privileges", "--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL",
        "--tmpfs", f"/tmp:rw,exec,mode=777,size={size}",
        "--env", "OMP_NUM_THREADS=1", "--env", "OPENBLAS_NUM_THREADS=1", "--env", "TMPDIR=/tmp",
        "--cpus", "4", "--memory", str(8 * 1024**3),
    ]  # fmt: skip
    assert "--read-only-tmpfs=false" not in container_run_flags(pod, "sandbox", "docker")


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (("securityContext", "procMount"), "Unmasked", "fields not translated: \\['procMount'\\]"),
        (("securityContext", "seccompProfile"), {"type": "Unconfined"}, "only RuntimeDefault"),
        (("securityContext", "privileged"), True, "privileged"),
        (("securityContext", "runAsUser"), 0, "non-zero runAsUser"),
    ],
)
def test_a_field_it_cannot_reproduce_is_refused(path, value, error):
    pod = copy.deepcopy(shared_sandbox_pod())
    pod["containers"][0][path[0]][path[1]] = value
    with pytest.raises(UnsupportedPodField, match=error):
        container_run_flags(pod, "sandbox")


def test_a_disk_backed_volume_is_refused():
    pod = copy.deepcopy(shared_sandbox_pod())
    pod["volumes"][0]["emptyDir"].pop("medium")
    with pytest.raises(UnsupportedPodField, match="only memory-backed emptyDirs"):
        container_run_flags(pod, "sandbox")


def test_quantities_and_listen_address():
    assert quantity_bytes("2Gi") == 2 * 1024**3 and quantity_bytes("512M") == 512 * 10**6
    assert quantity_bytes("1000") == 1000
    args = ["--host", "0.0.0.0", "--port", "8080", "--workers", "4"]
    assert with_args(args, host="127.0.0.1", port=9) == [
        "--workers",
        "4",
        "--host",
        "127.0.0.1",
        "--port",
        "9",
    ]
    assert with_args(args, workers=2)[-2:] == ["--workers", "2"] and with_args([], port=1) == ["--port", "1"]
