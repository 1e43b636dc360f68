"""Pure-Python parts of the sandbox: codec, probes, reward formulas (EvalPlus comparison:
test_evalplus_compare.py)."""

from __future__ import annotations

import math

import pytest
from sandbox_helpers import GOOD, NO_FENCE, SYNTAX, TWO_BLOCKS

from diffucoder.rl.rewards import extract_code, format_reward
from diffucoder.sandbox.codec import CodecError, Opaque, decode, encode
from diffucoder.sandbox.config import load_sandbox_config
from diffucoder.sandbox.pool import SlotInputs
from diffucoder.sandbox.probes import probe_for_assert, probes_for_io
from diffucoder.sandbox.process_budget import SERVER_HEADROOM, Process, limit_for
from diffucoder.sandbox.protocol import TierData
from diffucoder.sandbox.tiers import TierStore


@pytest.mark.parametrize(
    "value",
    [
        1,
        -(2**80),
        1.5,
        float("inf"),
        True,
        None,
        "s",
        b"\x00b",
        (1, [2, (3,)]),
        {1, 2},
        frozenset({"a"}),
        {"k": [1.0], (1, 2): {3}},
        1 + 2j,
        [],
        (),
    ],
)
def test_codec_round_trip_keeps_types(value):
    back = decode(encode(value))
    assert back == value and type(back) is type(value)


def test_codec_nan_and_type_distinctions():
    assert math.isnan(decode(encode(float("nan"))))
    assert decode(encode((1, 2))) != [1, 2]
    assert type(decode(encode(1))) is int and type(decode(encode(1.0))) is float


def test_codec_objects_become_inert_and_forged_payloads_fail():
    class Liar:
        def __eq__(self, other):
            return True

        __hash__ = object.__hash__

    liar = decode(encode(Liar()))
    assert isinstance(liar, Opaque) and liar != 1 and liar != liar.type_name and liar == liar
    drawn = decode(encode(x for x in (1, (2, 3))))  # items carried, the object still equals only itself
    assert isinstance(drawn, Opaque) and list(drawn) == [1, (2, 3)] and drawn != [1, (2, 3)]
    assert list(decode(encode(drawn))) == [1, (2, 3)]
    for forged in (
        {"x": 1},
        {"i": "1"},
        [1],
        {"l": 5},
        {"d": [[{"l": []}, 1]]},
        {"ln": [1, "a"]},
        {"nd": ["<i8", [3], [{"i": 1}]]},
        {"np": ["O", None]},
        {"sub": ["x.Y", {"obj": "z"}]},
        {"std": ["os.system", []]},
        {"it": ["builtins.generator", {"l": []}]},
    ):
        with pytest.raises(CodecError):
            decode(forged)


def test_codec_keeps_what_evalplus_compares():
    import collections

    import numpy as np

    point = collections.namedtuple("Point", "x y")(1, 2)
    back = decode(encode(point))
    assert back == (1, 2) and type(back) is not tuple and isinstance(back, tuple)
    assert decode(encode(point)) == back  # re-encoding a decoded value keeps it
    counter = decode(encode(collections.Counter("abca")))
    assert type(counter) is collections.Counter and counter == {"a": 2, "b": 1, "c": 1}
    scalar, array = decode(encode(np.int64(3))), decode(encode(np.array([[1.5, 2.0]])))
    assert type(scalar) is np.int64 and array.shape == (1, 2) and array.dtype == np.float64
    big = 7**20_000  # beyond Python's 4300-digit str limit
    assert decode(encode(big)) == big
    million = list(range(10**6)) + [0.5]
    assert decode(encode(million)) == million and type(decode(encode(million))[-1]) is float


def test_digest_of_a_value_too_large_to_carry(monkeypatch):
    import copy

    import numpy as np

    from diffucoder.sandbox import codec, harness

    def digested(value):
        return decode(codec.digest(value))

    # Mbpp/255's shape at a smaller size: tuples of the input's own strings, built anew or shared
    colours = ["Dog", "Cat", "CatBird"]
    shared = [tuple(colours[i % 3] for i in range(j, j + 20)) for j in range(500)]
    rebuilt = [tuple("".join(list(s)) for s in t) for t in copy.deepcopy(shared)]
    assert rebuilt[0][0] is not shared[0][0] and digested(rebuilt) == digested(shared)
    assert digested(shared[:-1] + [shared[-1][:-1] + ("Fish",)]) != digested(shared)
    assert digested(shared) != digested(tuple(shared)) and len(digested(shared)) == 500
    assert digested([(3,)]) != digested([(3.0,)])  # stricter than ==, as documented
    # every item counts: printed forms abbreviate (a numpy array over 1,000 items prints with ...)
    arrays = [np.arange(2000) for _ in range(3)]
    changed = [a.copy() for a in arrays]
    changed[1][1000] = -1
    assert repr(changed[1]) == repr(arrays[1]) and digested(changed) != digested(arrays)
    # a value known to be too large skips the encode attempt (which walks MAX_ITEMS items first)
    monkeypatch.setattr(codec, "MAX_ITEMS", 5_000)
    assert codec.too_large(shared) and not codec.too_large(shared[:100]) and not codec.too_large("x" * 9000)
    monkeypatch.setattr(harness, "encode", lambda value: pytest.fail("encode attempted"))
    assert decode(harness._encode_result(shared, "call")) == digested(shared)


def test_probe_splits_assert_and_hides_expected():
    probe = probe_for_assert("assert add(1, 2) == 3")
    assert probe.mode == "value" and probe.source == "add(1, 2)" and "3" not in str(probe.wire())
    assert probe.judge(3) and not probe.judge(4)
    flipped = probe_for_assert("assert [1, 2] == f(x)")
    assert flipped.source == "f(x)" and flipped.judge([1, 2])
    assert probe_for_assert("assert f(x) != 'a'").judge("b")
    assert probe_for_assert("assert f() is None").judge(None)
    assert probe_for_assert("assert f(1, 2) == (1, 2)").judge((1, 2)) is True
    assert probe_for_assert("assert f(1, 2) == (1, 2)").judge([1, 2]) is False  # tuple is not list
    # a split assert keeps Python's exact semantics (as running the assert would); only io jobs get atol
    assert probe_for_assert("assert f() == 0.3").judge(0.1 + 0.2) is False
    assert probe_for_assert("assert f() == 3.0").judge(3) is True


@pytest.mark.parametrize(
    "test",
    [
        "assert is_prime(7)",
        "assert f(1) < 3",
        "assert f(x) == g(y)",
        "for i in range(3):\n    assert f(i) == i",
        "check(candidate)",
        "assert (",
    ],
)
def test_other_shapes_run_whole(test):
    probe = probe_for_assert(test)
    assert probe.mode == "exec" and probe.source == test


def test_io_probes_validate_and_keep_expected_values_out_of_the_wire():
    probes = probes_for_io("f", [[1], [2]], [1, 4])
    assert [p.expected for p in probes] == [1, 4]
    assert [p.wire() for p in probes] == [
        {"source": "f", "mode": "call", "input": 0},
        {"source": "f", "mode": "call", "input": 1},
    ]
    with pytest.raises(ValueError, match="not a Python identifier"):
        probes_for_io("f(); import os", [[1]], None)
    with pytest.raises(ValueError, match="expected has 1 items but inputs has 2"):
        probes_for_io("f", [[1], [2]], [1])


@pytest.mark.parametrize(
    ("completion", "fmt"),
    [
        (GOOD, 1.0),
        (SYNTAX, 0.5),
        (NO_FENCE, 0.0),
        (TWO_BLOCKS, 0.0),
        (GOOD.rstrip("\n"), 0.0),  # no newline after the closing fence (open-r1's format regex)
        (GOOD + "Hope this helps.\n", 0.0),  # prose after the block
        (GOOD.replace("python", "py", 1), 0.0),
    ],
)
def test_format_reward_reference_cases(completion, fmt):
    assert format_reward(completion) == fmt


def test_extract_code():
    assert extract_code(GOOD) == "def add(a, b):\n    return a + b\n"
    assert extract_code(NO_FENCE) is None


def test_load_sandbox_config_reads_the_section_and_names_bad_keys(tmp_path):
    assert load_sandbox_config("paper-7b").workers == 8
    cfg = load_sandbox_config("tiny", ["sandbox.workers=3", "memory_mb=512"])
    assert (cfg.workers, cfg.memory_mb) == (3, 512)
    custom = tmp_path / "run.yaml"
    custom.write_text("sandbox:\n  max_processes: 16\nmodel: {}\n")
    assert load_sandbox_config(str(custom)).max_processes == 16
    with pytest.raises(ValueError, match="sandbox.wokers"):
        load_sandbox_config(None, ["wokers=2"])
    with pytest.raises(ValueError, match="neither a preset nor a file"):
        load_sandbox_config("no-such-preset")


def test_tier_store_is_content_addressed_and_drops_the_least_recently_used():
    a = TierData(inputs=[encode([1])], expected=[encode(2)])
    b = TierData(inputs=[encode(["x" * 400])], expected=None)
    store = TierStore(capacity_bytes=600)
    first = store.put(a)
    assert store.put(TierData(inputs=[encode([1])], expected=[encode(2)])) is first
    assert first.inputs == [[1]] and first.expected == [2] and len(first) == 1
    store.put(b)
    assert store.get(first.ref) is first  # both fit: a is now the most recently used
    store.put(TierData(inputs=[encode(["y" * 400])]))
    assert store.get(first.ref) is first and len(store.tiers) == 2  # b went first
    with pytest.raises(CodecError):
        store.put(TierData(inputs=[{"bogus": 1}]))


def test_slot_inputs_sends_a_tier_once_and_names_what_the_slot_keeps():
    store = TierStore(capacity_bytes=1 << 20)
    small, other = (store.put(TierData(inputs=[encode([n])])) for n in (1, 2))
    slot = SlotInputs(capacity=small.inputs_bytes + other.inputs_bytes)
    job = {"io": {"inputs": small.ref}}
    slot.attach(job, small)
    assert job["io"]["encoded"] == small.encoded_inputs and job["io"]["hold"] == [small.ref]
    again = {"io": {"inputs": small.ref}}
    slot.attach(again, small)
    assert "encoded" not in again["io"]
    slot.attach({"io": {"inputs": other.ref}}, other)
    assert list(slot.held) == [small.ref, other.ref]
    slot.clear()
    fresh = {"io": {"inputs": small.ref}}
    slot.attach(fresh, small)
    assert "encoded" in fresh["io"]


def shared_uid_table(bomb: int, others: int = 0) -> dict[int, Process]:
    """The server (pid 10, 6 threads) of uid 7, two slots (11, 12), a job in slot 11 holding
    ``bomb`` processes, the job process about to run in slot 12 (20), and ``others`` processes of
    uid 7 outside the server (a shell of the same user); root's init (1)."""
    table = {1: Process(0, 0, 1), 10: Process(1, 7, 6), 11: Process(10, 7, 1), 12: Process(10, 7, 1)}
    table[20] = Process(12, 7, 1)
    table |= {100 + i: Process(11, 7, 1) for i in range(bomb)}
    table |= {200 + i: Process(1, 7, 1) for i in range(others)}
    return table


@pytest.mark.parametrize(
    ("bomb", "others", "own_limit", "expected"),
    [
        (0, 0, None, 8 + 32),  # alone: what the uid holds besides itself (server, slots) + the budget
        (31, 0, None, 39 + 32),  # a bomb beside it takes nothing of its budget
        (31, 50, None, 89 + 32),  # nor do the uid's processes outside the server
        (200, 0, None, 8 + 2 * 32),  # jobs together never past every slot's budget
        (0, 0, 70, 70 - SERVER_HEADROOM),  # always below the server's own limit
    ],
)
def test_shared_uid_process_limit(bomb, others, own_limit, expected):
    table = shared_uid_table(bomb, others)
    assert limit_for(table, uid=7, server_pid=10, budget=32, own_limit=own_limit) == expected
