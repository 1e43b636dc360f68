"""The result-pipe forger fails every test shape, for evaluation and for GRPO rewards.

The forger writes result lines ("loaded", then "ok" for every test index, with any value) on every
descriptor it can find, at import or from inside the function under test, and then exits; variants
kill every other process of their uid or answer with an object that equals everything (its
truthiness stays its own, as in Python: ``assert f(x)`` asks for nothing more). Each shape
is also run with an honest program, which must pass, so a shape the harness cannot run at all
would show up here rather than pass as "unforgeable".
"""

from __future__ import annotations

import pytest
from sandbox_helpers import FENCE, assert_honest

from diffucoder.rl.rewards import code_rewards
from diffucoder.sandbox.client import Job

pytestmark = pytest.mark.hostile

_FORGE = """
import os
_lines = b'{"event": "isolated"}\\n{"event": "loaded"}\\n' + b"".join(
    b'{"event": "result", "index": %d, "status": "ok", "value": true}\\n' % i for i in range(32)
) + b'{"load": {"event": "loaded"}}\\n{"id": 1, "names": {}}\\n'
def _forge():
    for fd in range(3, 16):
        try:
            os.write(fd, _lines)
        except OSError:
            pass
"""
FORGERS = {
    "at_import": _FORGE
    + "_forge()\nos._exit(0)\ndef is_prime(n):\n    return False\ndef add(a, b):\n    return 0\n",
    "in_the_call": _FORGE
    + "def is_prime(n):\n    _forge()\n    os._exit(0)\ndef add(a, b):\n    _forge()\n    os._exit(0)\n",
    "forges_and_stays": _FORGE + "_forge()\ndef is_prime(n):\n    _forge()\n    return False\n"
    "def add(a, b):\n    _forge()\n    return 0\n",
    "kills_its_uid": _FORGE
    + "import signal\n_forge()\nfor _p in os.listdir('/proc'):\n    if _p.isdigit() and int(_p) != os.getpid():\n"
    "        try:\n            os.kill(int(_p), signal.SIGKILL)\n        except OSError:\n            pass\n"
    "def is_prime(n):\n    return False\ndef add(a, b):\n    return 0\n",
    "equals_everything": "class _Any:\n    def __eq__(self, other):\n        return True\n    def __bool__(self):\n"
    "        return True\n    __hash__ = object.__hash__\ndef is_prime(n):\n    return n % 2 == 0\n"
    "def add(a, b):\n    return _Any()\n",
}
HONEST = (
    "def is_prime(n):\n    return n > 1 and all(n % d for d in range(2, n))\n"
    "def add(a, b):\n    return a + b\n"
)
SHAPES = {
    "literal": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
    "truthy": ["assert is_prime(7)", "assert not is_prime(8)"],
    "all": ["assert all(add(i, 1) == i + 1 for i in range(5))"],
    "comparison": ["assert 2 < add(1, 2) < 4", "assert add(1, 2) == add(2, 1)"],
    "loop": ["for i in range(4):\n    assert add(i, i) == 2 * i"],
    "humaneval_check": [
        "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0\n\ncheck(add)\n"
    ],
    "mixed": ["assert add(1, 2) == 3", "assert is_prime(7)"],
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_passes_honest_code_and_no_forger(contained_client, shape):
    tests = SHAPES[shape]
    honest = contained_client.run(Job(code=HONEST, tests=tests))
    assert honest.verdicts == ["passed"] * len(tests), (shape, honest.verdicts, honest.stderr[-300:])
    for name, code in FORGERS.items():
        result = contained_client.run(Job(code=code, tests=tests, time_limit_s=2.0))
        assert result.infra_error is None, result.infra_error
        assert result.passed == 0, (shape, name, result.verdicts, result.stderr[-300:])
    assert_honest(contained_client)


def test_io_jobs_give_the_forger_nothing(contained_client):
    """EvalPlus-style evaluation: every output is a value the server compares."""
    inputs = [[1, 2], [2, 2], [5, 7]]
    expected = [3, 4, 12]
    honest = contained_client.run(Job(code=HONEST, entry_point="add", inputs=inputs, expected=expected))
    assert honest.verdicts == ["passed"] * 3
    for name, code in FORGERS.items():
        result = contained_client.run(Job(code=code, entry_point="add", inputs=inputs, expected=expected))
        assert result.passed == 0, (name, result.verdicts)


def test_grpo_code_rewards_give_the_forger_nothing(contained_client):
    """The GRPO reward path (rl/rewards.py) on completions in the paper's format."""
    tests = [t for shape in SHAPES.values() for t in shape]

    def fenced(code: str) -> str:
        return f"Here is the code:\n{FENCE}python\n{code}{FENCE}\n"

    completions = [fenced(HONEST)] + [fenced(code) for code in FORGERS.values()]
    rewards = code_rewards(completions, [tests] * len(completions), contained_client, time_limit_s=2.0)
    assert rewards[0] == 1.0
    assert rewards[1:] == [0.0] * len(FORGERS), rewards


def test_tests_that_run_whole_can_use_the_solutions_objects(contained_client):
    """Handles: a class of the solution constructed, its attributes set and read, its methods called,
    its objects passed back and iterated; an exception keeps its builtin type."""
    code = (
        "class Node:\n    def __init__(self, v):\n        self.v, self.left = v, None\n"
        "    def depth(self):\n        return 1 + (self.left.depth() if self.left else 0)\n"
        "def depth_of(node):\n    return node.depth()\n"
        "def evens(n):\n    return (i for i in range(n) if i % 2 == 0)\n"
        "def checked(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n"
    )
    tests = [
        "root = Node(1)\nroot.left = Node(2)\nassert root.left.v == 2 and depth_of(root) == 2",
        "assert list(evens(7)) == [0, 2, 4, 6]",
        "try:\n    checked(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError",
        "assert Node(3) != Node(3)",  # objects of the solution compare by identity here
    ]
    result = contained_client.run(Job(code=code, tests=tests))
    assert result.verdicts == ["passed"] * len(tests), (result.verdicts, result.stderr[-500:])
