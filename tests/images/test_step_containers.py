"""Pipeline steps in their image through kfp.local's DockerRunner (pipelines/containers.py): a step's
exit code decides its result, also for a step that fails before writing any output.

Marker ``images`` (`make test-images`): the steps run in the tools image built by the project's
own build command, with the engine this machine has (podman through its Docker API, or Docker).
No ``from __future__ import annotations`` here: kfp reads the components' annotations as types.
"""

import subprocess

import pytest
from built_images import built, engine
from diffucoder_kfp import containers
from kfp import dsl, local

from diffucoder.image_build import Engine

pytestmark = pytest.mark.images


def components(image: str):
    @dsl.component(base_image=image, install_kfp_package=False)
    def exits_nonzero():
        import sys

        print("exiting with status 3 on purpose", file=sys.stderr)
        sys.exit(3)

    @dsl.component(base_image=image, install_kfp_package=False)
    def touch(path: str):
        open(path, "w").close()

    @dsl.component(base_image=image, install_kfp_package=False)
    def echo(text: str) -> str:
        return text

    @dsl.pipeline(name="fails-first")
    def fails_first(marker: str):
        touch(path=marker).after(exits_nonzero())

    return fails_first, echo


def step_containers(image: str) -> set[str]:
    out = subprocess.run(
        [engine(), "ps", "--all", "--quiet", "--no-trunc", "--filter", f"ancestor={image}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


@pytest.fixture
def runner(tmp_path):
    out, kfp_root = tmp_path / "out", tmp_path / "kfp"
    with containers.step_runner(Engine(engine()), output_root=out, pipeline_root=kfp_root) as docker:
        local.init(docker, pipeline_root=str(kfp_root), raise_on_error=True)
        yield out


def test_a_failing_step_without_outputs_fails_the_run_before_the_next_step(runner, capfd):
    image = built("tools")
    fails_first, _ = components(image)
    before = step_containers(image)
    with pytest.raises(RuntimeError, match="FAILURE"):
        fails_first(marker=str(runner / "marker"))
    assert not (runner / "marker").exists()  # the step after it never ran
    assert "exiting with status 3 on purpose" in capfd.readouterr().out  # its log was read in full
    assert step_containers(image) == before  # and its container removed once the status was read


def test_a_step_that_succeeds_returns_its_output(runner):
    image = built("tools")
    _, echo = components(image)
    before = step_containers(image)
    assert echo(text="from the container").output == "from the container"
    assert step_containers(image) == before
