"""A bad build environment gets a message that names what is wrong and what to do (real engine)."""

from __future__ import annotations

import pytest
from built_images import engine

from diffucoder.image_build import BuildEnvironmentError, Engine

pytestmark = pytest.mark.images


def test_a_local_base_that_was_never_built_is_named():
    with pytest.raises(
        BuildEnvironmentError, match=r"localhost/diffucoder-no-such-base:1 is missing .*--local-base"
    ):
        Engine(engine()).ensure_base("localhost/diffucoder-no-such-base:1")


def test_a_base_no_registry_serves_is_named_with_the_local_base_switch():
    # a loopback port nothing listens on: the pull fails at once, as it does without registry access
    ref = "127.0.0.1:9/diffucoder/python:3.11.14-slim-bookworm"
    with pytest.raises(BuildEnvironmentError, match=r"cannot be pulled .*registry reachable.*LOCAL_BASE=1"):
        Engine(engine()).ensure_base(ref)
