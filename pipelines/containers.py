"""Run the DAG's steps in their images: ``kfp.local.DockerRunner`` against Docker or podman.

``diffucoder pipeline run-local --runner docker`` runs the same DAG as ``make run``, but each step
in the image its component names (tools for data and control steps, the CPU trainer for training
and evaluation), and the sandbox as a container of its own with the pod's security context
(:func:`diffucoder.k8s.pod_run.sandbox_container`). Steps share the host's network (they reach the
sandbox, and an MLflow or S3 endpoint, on loopback) and see the run's output root and the
benchmark data at the host's paths.

podman: its Docker-compatible API (``podman system service``) is started on a private socket for
the run and ``DOCKER_HOST`` points the docker SDK at it. File ownership: run as root, the output
root is handed to the step images' uid (steps run as that non-root user, as in a cluster); run as
another user, steps run as that user so the files stay theirs.

Exit codes: kfp.local (2.17) starts each step's container with ``auto_remove=True`` and reads its
exit code only after the logs end, when the engine has removed it (podman always has, Docker
often); it takes the missing container for a success, so a failing step that writes no outputs
went unnoticed (kubeflow/pipelines#13332). :func:`exit_codes_kept` runs the steps without
auto-removal for as long as that bug is in the installed kfp: the exit code is read, then the
container removed.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diffucoder.image_build import BuildEnvironmentError, Engine, detect_engine
from diffucoder.images import IMAGE_UIDS, REGISTRY_ENV, TRAINER_FLAVOUR_ENV, image_ref
from diffucoder.k8s.pod_run import sandbox_container
from diffucoder.sandbox.local import free_port

IMAGE_UID = IMAGE_UIDS["tools"]  # the steps' user (the trainer image has the same)
STEP_IMAGES = ("tools", "trainer-cpu", "sandbox")


def use_images(registry: str | None) -> None:
    """Point the components at the CPU trainer (and ``registry``); call before importing them."""
    os.environ[TRAINER_FLAVOUR_ENV] = "cpu"
    if registry:
        os.environ[REGISTRY_ENV] = registry


@contextlib.contextmanager
def docker_api(engine: Engine) -> Iterator[None]:
    """A Docker API for the docker SDK: Docker's own, or podman's service on a private socket."""
    if engine.name == "docker":
        yield
        return
    with tempfile.TemporaryDirectory(prefix="diffucoder-podman-") as tmp:
        socket = Path(tmp) / "podman.sock"
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        previous = os.environ.get("DOCKER_HOST")
        os.environ["DOCKER_HOST"] = f"unix://{socket}"
        try:
            deadline = time.monotonic() + 30
            while not socket.exists():
                if service.poll() is not None or time.monotonic() > deadline:
                    raise BuildEnvironmentError(
                        f"podman system service did not start: {(service.stderr.read() if service.stderr else '')[-500:]}"
                    )
                time.sleep(0.2)
            yield
        finally:
            service.terminate()
            service.wait(timeout=30)
            if previous is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = previous


def _require_images(engine: Engine, registry: str | None) -> None:
    missing = [ref for ref in (image_ref(t, registry) for t in STEP_IMAGES) if not engine.has_image(ref)]
    if missing:
        where = f" IMAGE_ARGS='--registry {registry}'" if registry else ""
        raise BuildEnvironmentError(
            f"images missing from {engine.name}: {', '.join(missing)}. Build them first: "
            f"make images IMAGES='{' '.join(STEP_IMAGES)}' LOCAL_BASE=1{where} (LOCAL_BASE=1 where no "
            "registry is reachable)"
        )


def _hand_over(path: Path) -> None:
    """Give a run directory to the images' uid (we are root; the steps are not)."""
    for root, dirs, files in os.walk(path):
        os.chown(root, IMAGE_UID, IMAGE_UID)
        for name in dirs + files:
            os.chown(os.path.join(root, name), IMAGE_UID, IMAGE_UID, follow_symlinks=False)


def run_step_container(client: Any, image: str, command: list[str], volumes: dict, **run_args: Any) -> int:
    """One step's container: started, its logs streamed, its real exit code returned, then removed.

    What kfp.local's ``run_docker_container`` does, less the ``auto_remove=True`` that loses the
    exit code; a removal that fails afterwards does not change the step's result.
    """
    import docker

    container = client.containers.run(
        image=image, command=command, detach=True, stdout=True, stderr=True, volumes=volumes, **run_args
    )
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


@contextlib.contextmanager
def exit_codes_kept() -> Iterator[None]:
    """kfp.local's DockerRunner with :func:`run_step_container` while the installed kfp starts its
    containers with ``auto_remove=True`` (kubeflow/pipelines#13332); a kfp without it is left as is."""
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    if "auto_remove=True" not in inspect.getsource(original):
        yield
        return
    docker_task_handler.run_docker_container = run_step_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


@contextlib.contextmanager
def step_runner(
    engine: Engine, *, output_root: Path, pipeline_root: Path, read_only: tuple[Path, ...] = ()
) -> Iterator[Any]:
    """kfp.local's DockerRunner for steps that write under ``output_root`` and ``pipeline_root``
    and read ``read_only``, with a Docker API up for it and exit codes kept, for the block."""
    from docker.types import Mount
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    output_root.mkdir(parents=True, exist_ok=True)
    run_as = {}
    if os.geteuid() == 0:
        _hand_over(output_root)
        if not pipeline_root.is_relative_to(output_root):
            _hand_over(pipeline_root)
    else:
        run_as = {"user": f"{os.getuid()}:{os.getgid()}"}
    mounts = [Mount(str(output_root), str(output_root), type="bind")]
    mounts += [Mount(str(path), str(path), type="bind", read_only=True) for path in read_only]
    with docker_api(engine), exit_codes_kept():
        yield local.DockerRunner(network_mode="host", mounts=mounts, **run_as)


@contextlib.contextmanager
def containers(arguments: dict, pipeline_root: str, registry: str | None) -> Iterator[tuple[object, dict]]:
    """The DockerRunner for this run and the arguments it runs with (the sandbox container's URL
    in place of a local sandbox subprocess)."""
    engine = detect_engine()
    _require_images(engine, registry)
    benchmarks = arguments.get("benchmark_root", "")
    read_only = (Path(benchmarks),) if benchmarks and Path(benchmarks).is_dir() else ()
    with (
        step_runner(
            engine,
            output_root=Path(arguments["output_root"]),
            pipeline_root=Path(pipeline_root),
            read_only=read_only,
        ) as runner,
        sandbox_container(
            engine.name,
            image_ref("sandbox", registry),
            port=free_port(),
            name=f"diffucoder-sandbox-{os.getpid()}",
        ) as (url, _),
    ):
        yield runner, {**arguments, "sandbox_mode": "shared", "sandbox_url": url}
