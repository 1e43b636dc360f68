"""Procedurally generated Python function tasks for the tiny preset (train + held-out splits).

Why this family: a ~5M-parameter diffusion model trained for a few CPU minutes must reach a
clearly non-zero held-out pass@1 through stage 3, and coupled-GRPO must be able to improve it.
So the tasks are built for learnability *and* generalisation:

- a compact vocabulary of typed operations (int, str, list[int] -> ...), each with ONE phrase in the
  instruction and ONE line of code in the solution, so "phrase -> line" is a consistent mapping;
- a task composes 1..difficulty operations into a chain; the solution is one line per operation
  (intermediate values reassigned to a variable named after their type, the last one returned);
- the function name is derived from the operation slugs and the argument name from the input type,
  both stated in the instruction;
- the held-out split is a fixed slice of the *task space* (a salted hash of the operation/parameter
  chain), so held-out tasks are unseen combinations of familiar parts, never copies of train tasks,
  and the split is the same for every seed;
- the RL problems are a second fixed slice, drawn the same way as the held-out tasks, so stage 4
  practises the same mix of operations the held-out split measures.

Unit tests are 3-5 asserts whose expected values come from executing the reference solution on
generated inputs (our own code, so plain in-process ``exec`` is fine here; model output only ever
runs in the sandbox).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

SPLIT_SALT = "diffucoder-tiny-tasks-v1"
INT, STR, LIST, PAIR, BOOL = "int", "str", "list", "pair", "bool"
# Name of the variable that holds a value of each type inside a solution.
VAR = {INT: "n", STR: "text", LIST: "nums"}
INPUT_DESC = {
    INT: "an integer `n`",
    STR: "a string `text`",
    LIST: "a list of integers `nums`",
    PAIR: "two integers `a` and `b`",
}
ARGS = {INT: "n", STR: "text", LIST: "nums", PAIR: "a, b"}


@dataclass(frozen=True)
class Op:
    """One operation: instruction phrase and code expression over the current value ``{v}``.

    ``param`` kinds: None, "k" (small int constant) or "c" (a lower-case letter). ``slip`` is a
    plausible wrong expression for the same phrase, what a train solution shows when it slips: a
    classic bug (``/`` for ``//``, ``.sort()`` used as a value, ``~n`` for ``-n``). No slip is code
    that is right for another operation (``min`` where ``max`` is meant, ``len(text)`` for the word
    count): the tiny model keeps such pairs entangled, and stage 4, rewarding ``max`` on "larger",
    learned "always ``max``" and broke "smaller" and "cap it at k" (BENCHMARKS.md `## grpo`). No
    boundary slips (``>=`` for ``>``) either: the generated tests rarely hit the boundary, so neither
    they nor a reward could tell such a slip apart.
    """

    slug: str
    src: str
    dst: str
    phrase: str
    expr: str
    param: str | None = None
    params: tuple = ()
    slip: str | None = None


K_SMALL = tuple(range(2, 10))
LETTERS = tuple("aeilnorst")

OPS: tuple[Op, ...] = (
    # two integers -> int (only as a first step)
    Op("larger", PAIR, INT, "take the larger of the two", "max(a, b)"),
    Op("smaller", PAIR, INT, "take the smaller of the two", "min(a, b)"),
    Op("plus", PAIR, INT, "add them together", "a + b"),
    Op("minus", PAIR, INT, "subtract `b` from `a`", "a - b", slip="b - a"),
    Op("product", PAIR, INT, "multiply them", "a * b"),
    # int -> int
    Op("add{k}", INT, INT, "add {k}", "{v} + {k}", "k", K_SMALL),
    Op("sub{k}", INT, INT, "subtract {k}", "{v} - {k}", "k", K_SMALL),
    Op("times{k}", INT, INT, "multiply by {k}", "{v} * {k}", "k", K_SMALL),
    Op("div{k}", INT, INT, "integer-divide by {k}", "{v} // {k}", "k", K_SMALL, slip="{v} / {k}"),
    Op("mod{k}", INT, INT, "take the remainder modulo {k}", "{v} % {k}", "k", K_SMALL),
    Op("square", INT, INT, "square it", "{v} * {v}", slip="{v} ^ 2"),
    Op("negate", INT, INT, "negate it", "-{v}", slip="~{v}"),
    Op("absolute", INT, INT, "take the absolute value", "abs({v})"),
    Op("atleast{k}", INT, INT, "raise it to at least {k}", "max({v}, {k})", "k", K_SMALL),
    Op("atmost{k}", INT, INT, "cap it at {k}", "min({v}, {k})", "k", K_SMALL),
    # int -> bool / str (final only)
    Op("is_even", INT, BOOL, "check whether it is even", "{v} % 2 == 0", slip="{v} % 2"),
    Op("above{k}", INT, BOOL, "check whether it is greater than {k}", "{v} > {k}", "k", K_SMALL),
    Op(
        "sign",
        INT,
        STR,
        "map it to 'pos' if it is positive and 'nonpos' otherwise",
        "'pos' if {v} > 0 else 'nonpos'",
    ),
    # str -> str
    Op("upper", STR, STR, "convert it to upper case", "{v}.upper()", slip="{v}.capitalize()"),
    Op("lower", STR, STR, "convert it to lower case", "{v}.lower()"),
    Op("reverse", STR, STR, "reverse it", "{v}[::-1]", slip="reversed({v})"),
    Op("nospace", STR, STR, "remove all spaces", "{v}.replace(' ', '')"),
    Op("strip", STR, STR, "strip surrounding whitespace", "{v}.strip()"),
    Op("append_{c}", STR, STR, "append the letter '{c}'", "{v} + '{c}'", "c", LETTERS),
    Op("drop_{c}", STR, STR, "remove every letter '{c}'", "{v}.replace('{c}', '')", "c", LETTERS),
    Op("twice", STR, STR, "repeat it twice", "{v} * 2"),
    # str -> int / bool
    Op("length", STR, INT, "count its characters", "len({v})"),
    Op("count_{c}", STR, INT, "count the occurrences of the letter '{c}'", "{v}.count('{c}')", "c", LETTERS),
    Op("words", STR, INT, "count its words", "len({v}.split())", slip="{v}.count(' ')"),
    Op("has_{c}", STR, BOOL, "check whether it contains the letter '{c}'", "'{c}' in {v}", "c", LETTERS),
    Op("starts_{c}", STR, BOOL, "check whether it starts with '{c}'", "{v}.startswith('{c}')", "c", LETTERS),
    # list -> list
    Op("evens", LIST, LIST, "keep only the even numbers", "[x for x in {v} if x % 2 == 0]"),
    Op("odds", LIST, LIST, "keep only the odd numbers", "[x for x in {v} if x % 2 == 1]"),
    Op(
        "over{k}",
        LIST,
        LIST,
        "keep only the numbers greater than {k}",
        "[x for x in {v} if x > {k}]",
        "k",
        K_SMALL,
    ),
    Op(
        "under{k}",
        LIST,
        LIST,
        "keep only the numbers less than {k}",
        "[x for x in {v} if x < {k}]",
        "k",
        K_SMALL,
    ),
    Op("scale{k}", LIST, LIST, "multiply each number by {k}", "[x * {k} for x in {v}]", "k", K_SMALL),
    Op("shift{k}", LIST, LIST, "add {k} to each number", "[x + {k} for x in {v}]", "k", K_SMALL),
    Op("squares", LIST, LIST, "square each number", "[x * x for x in {v}]"),
    Op("ascending", LIST, LIST, "sort the numbers in ascending order", "sorted({v})", slip="{v}.sort()"),
    Op("flipped", LIST, LIST, "reverse the list", "{v}[::-1]", slip="{v}.reverse()"),
    # list -> int / bool
    Op("total", LIST, INT, "compute the sum of the numbers", "sum({v})"),
    Op("count", LIST, INT, "count the numbers", "len({v})"),
    Op("largest", LIST, INT, "find the largest number (0 if there is none)", "max({v}, default=0)"),
    Op("smallest", LIST, INT, "find the smallest number (0 if there is none)", "min({v}, default=0)"),
    Op("contains{k}", LIST, BOOL, "check whether {k} is in the list", "{k} in {v}", "k", K_SMALL),
)

# The signature ends the instruction on a line of its own, written exactly as the solution's first
# line, so it tokenizes the same in both places: in backticks ("`count_sub3(nums)`") BPE splits the
# name differently from "def count_sub3(nums):" (e.g. 'count' vs 'Ġcount'), and a tiny model then
# has to learn a token-to-token mapping per name piece before it can copy the name at all.
INTROS = (
    "Write a Python function that takes {inp}. It should {steps}, and return the result.\n{sig}",
    "Implement this function: given {inp}, {steps}. Return the result.\n{sig}",
    "Create a function which receives {inp}. It should {steps} and return the result.\n{sig}",
)


@dataclass(frozen=True)
class Step:
    """An operation with its parameter bound."""

    op: Op
    value: int | str | None

    def fill(self, text: str, var: str = "") -> str:
        return text.format(k=self.value, c=self.value, v=var)

    @property
    def slug(self) -> str:
        return self.fill(self.op.slug)


@dataclass
class TinyTask:
    """One task row (the `train.jsonl` / `heldout.jsonl` format in docs/interfaces.md)."""

    task_id: str
    split: str
    difficulty: int
    prompt: str
    entry_point: str
    signature: str
    solution: str
    tests: list[str]
    steps: list[str]  # the chain's step slugs (e.g. ["evens", "total"]): what the split is defined on
    # train only: the solution stage 3 is shown when some steps slipped (``solution`` stays correct)
    sft_solution: str | None = None
    slips: list[str] = field(default_factory=list)  # slugs of the steps ``sft_solution`` gets wrong

    @property
    def training_solution(self) -> str:
        """What the training data shows for this task: the slipped solution if there is one."""
        return self.sft_solution or self.solution

    @property
    def key(self) -> str:
        """:func:`task_key` of the task's chain."""
        return "|".join(self.steps)

    def to_dict(self) -> dict:
        return asdict(self)


def task_key(chain: tuple[Step, ...]) -> str:
    """Canonical text of an operation chain: what makes two tasks the same task."""
    return "|".join(step.slug for step in chain)


def split_of(key: str, heldout_fraction: float, rl_fraction: float = 0.0) -> str:
    """Fixed train/held-out/rl assignment of a chain: a salted hash, independent of the sampling seed.

    The held-out slice is the lowest ``heldout_fraction`` of hash values whatever ``rl_fraction`` is,
    so reserving (or resizing) the RL slice never moves a chain into or out of the held-out split.
    """
    digest = hashlib.sha256(f"{SPLIT_SALT}:{key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    if bucket < heldout_fraction:
        return "heldout"
    return "rl" if bucket < heldout_fraction + rl_fraction else "train"


def _ops_from(src: str, last: bool) -> list[Op]:
    # Non-final steps must keep a value we can continue from (int/str/list).
    return [op for op in OPS if op.src == src and (last or op.dst in VAR)]


def sample_chain(rng: random.Random, length: int) -> tuple[Step, ...]:
    """Draw a type-consistent chain of ``length`` operations."""
    src = rng.choice((INT, STR, LIST, PAIR))
    chain: list[Step] = []
    for i in range(length):
        last = i == length - 1
        choices = _ops_from(src, last)
        if not choices:  # a pair can only be a first step; restart as int
            return sample_chain(rng, length)
        op = rng.choice(choices)
        value = rng.choice(op.params) if op.params else None
        chain.append(Step(op, value))
        src = op.dst
    return tuple(chain)


def render_solution(chain: tuple[Step, ...], slipped: frozenset[int] = frozenset()) -> tuple[str, str, str]:
    """(entry_point, signature, solution source): one line per operation; the steps at ``slipped``
    positions are written with their operation's ``slip`` instead of its expression."""
    name = "_".join(step.slug for step in chain)
    signature = f"def {name}({ARGS[chain[0].op.src]}):"
    lines = [signature]
    for i, step in enumerate(chain):
        var = VAR.get(step.op.src, "")
        expr = step.fill(step.op.slip if i in slipped else step.op.expr, var)
        if i == len(chain) - 1:
            lines.append(f"    return {expr}")
        else:
            lines.append(f"    {VAR[step.op.dst]} = {expr}")
    return name, signature, "\n".join(lines) + "\n"


def render_prompt(chain: tuple[Step, ...], signature: str, template: int) -> str:
    phrases = [step.fill(step.op.phrase) for step in chain]
    steps = phrases[0] if len(phrases) == 1 else ", then ".join(phrases)
    return INTROS[template].format(sig=signature, inp=INPUT_DESC[chain[0].op.src], steps=steps)


_WORDS = (
    "data",
    "model",
    "train",
    "token",
    "input",
    "loss",
    "python",
    "sort",
    "list",
    "eval",
    "tree",
    "node",
)


def random_input(rng: random.Random, src: str) -> tuple:
    if src == INT:
        return (rng.randint(-20, 40),)
    if src == PAIR:
        return (rng.randint(-20, 40), rng.randint(-20, 40))
    if src == LIST:
        return ([rng.randint(-5, 15) for _ in range(rng.randint(0, 7))],)
    words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 4))]
    words = [w.capitalize() if rng.random() < 0.3 else w for w in words]
    text = " ".join(words)
    return ((" " + text + " ") if rng.random() < 0.2 else text,)


def compile_solution(solution: str, entry_point: str) -> Callable:
    """Execute OUR reference solution in-process (never model output) and return the function."""
    namespace: dict = {}
    exec(compile(solution, f"<tiny-task {entry_point}>", "exec"), namespace)  # noqa: S102 - own code
    return namespace[entry_point]


def make_tests(
    rng: random.Random, chain: tuple[Step, ...], solution: str, entry_point: str
) -> list[str] | None:
    """3-5 distinct asserts with expected values computed by running the reference solution.

    Returns None for a degenerate chain (fewer than 2 distinct outputs over many inputs, e.g.
    "count the numbers, then check whether it is greater than 9"): a constant answer would pass.
    """
    fn = compile_solution(solution, entry_point)
    want = rng.randint(3, 5)
    cases: dict[str, str] = {}  # assert line -> repr(expected)
    for _ in range(100):
        args = random_input(rng, chain[0].op.src)
        expected = repr(fn(*args))
        cases.setdefault(f"assert {entry_point}({', '.join(repr(a) for a in args)}) == {expected}", expected)
        if len(cases) >= 3 * want:
            break
    by_output: dict[str, list[str]] = {}
    for line, expected in cases.items():
        by_output.setdefault(expected, []).append(line)
    if len(by_output) < 2:
        return None
    # Round-robin over distinct outputs so the tests cover different answers.
    groups = list(by_output.values())
    tests: list[str] = []
    while len(tests) < want and any(groups):
        for group in groups:
            if group and len(tests) < want:
                tests.append(group.pop(0))
    return tests


def choose_slips(rng: random.Random, chain: tuple[Step, ...], slip_rate: float) -> frozenset[int]:
    """Positions of the steps a train solution writes wrongly: each step that has a slip, independently."""
    return frozenset(i for i, step in enumerate(chain) if step.op.slip and rng.random() < slip_rate)


def _build_task(
    rng: random.Random, chain: tuple[Step, ...], split: str, index: int, slipped: frozenset[int]
) -> TinyTask | None:
    entry_point, signature, solution = render_solution(chain)
    prompt = render_prompt(chain, signature, rng.randrange(len(INTROS)))
    tests = make_tests(rng, chain, solution, entry_point)
    if tests is None:
        return None
    return TinyTask(
        task_id=f"tiny/{split}/{index}",
        split=split,
        difficulty=len(chain),
        prompt=prompt,
        entry_point=entry_point,
        signature=signature,
        solution=solution,
        tests=tests,
        steps=[step.slug for step in chain],
        sft_solution=render_solution(chain, slipped)[2] if slipped else None,
        slips=[chain[i].slug for i in sorted(slipped)],
    )


def _sample_split(
    seed: int,
    split: str,
    n: int,
    difficulty: int,
    heldout_fraction: float,
    rl_fraction: float,
    known_steps: set[str] | None = None,
    slip_rate: float = 0.0,
) -> list[TinyTask]:
    """``n`` distinct tasks from ``split`` of the task space (task ids and RNG stream named after it).

    Slips are drawn from a stream of their own, so the chains, prompts and tests of a split are the
    same whatever ``slip_rate`` is.
    """
    rng = random.Random(f"{seed}:{split}")
    slip_rng = random.Random(f"{seed}:{split}:slips")
    seen: set[str] = set()
    tasks: list[TinyTask] = []
    misses = 0  # consecutive draws that gave no new chain: the space is exhausted when this grows
    while len(tasks) < n:
        if misses > max(20_000, 20 * n):
            raise ValueError(
                f"tiny tasks: only {len(tasks)} distinct {split} tasks found at difficulty {difficulty}; "
                f"asked for {n} (raise data.tiny_tasks.difficulty or lower the count)"
            )
        chain = sample_chain(rng, rng.randint(1, difficulty))
        key = task_key(chain)
        misses += 1
        if key in seen or split_of(key, heldout_fraction, rl_fraction) != split:
            continue
        seen.add(key)
        if known_steps is not None and not {step.slug for step in chain} <= known_steps:
            continue  # a step never seen in training cannot be learned, only guessed
        task = _build_task(rng, chain, split, len(tasks), choose_slips(slip_rng, chain, slip_rate))
        if task is not None:
            tasks.append(task)
            misses = 0
    return tasks


def generate_tasks(
    seed: int,
    n_train: int,
    n_heldout: int,
    difficulty: int,
    heldout_fraction: float = 0.15,
    n_rl: int = 0,
    rl_fraction: float = 0.2,
    slip_rate: float = 0.0,
) -> dict[str, list[TinyTask]]:
    """The task sets, deterministic in the arguments: ``train`` (SFT), ``heldout`` and ``rl``.

    The three come from disjoint slices of the task space, and every step of a held-out or RL chain
    occurs in some train task: held-out measures composition/generalisation, not guessing an unseen
    operation. Like the paper's RL set (AceCode, apart from the SFT data), the ``rl`` problems are
    ones the SFT model has not memorised, so its rollouts on them disagree and the group advantages
    carry signal. They have a slice of their own, sampled like the held-out one, rather than being
    the train-side chains SFT left over: SFT exhausts the few chains of the parameter-free operations
    first ("negate", "is_even", "reverse"), so leftovers were nearly all "add k"/"sub k"-style chains
    (1 "negate" task in 1,000 against 14 in 200 held-out ones) and RL never practised the operations
    the stage-3 model gets wrong on held-out tasks.

    With ``slip_rate`` > 0 some train solutions write a step with its operation's plausible bug while
    the instruction stays the same (``TinyTask.sft_solution``), like the wrong answers in real
    instruction data. SFT then leaves the model unsure between the right line and the slip for those
    phrases, which is what execution rewards in stage 4 can settle; held-out and RL rows are correct.
    """
    train = _sample_split(
        seed, "train", n_train, difficulty, heldout_fraction, rl_fraction, slip_rate=slip_rate
    )
    known = {slug for task in train for slug in task.steps}
    heldout = _sample_split(seed, "heldout", n_heldout, difficulty, heldout_fraction, rl_fraction, known)
    rl = _sample_split(seed, "rl", n_rl, difficulty, heldout_fraction, rl_fraction, known)
    return {"train": train, "heldout": heldout, "rl": rl}


def task_as_code(task: TinyTask) -> str:
    """A train task written as a Python module (used in the tiny mid-training mix).

    The code is what SFT shows (a slipped solution where there is one) and the asserts are the
    reference's, as in real repositories whose code and tests disagree.
    """
    body = task.training_solution.split("\n", 1)[1]
    doc = f'    """{task.prompt}"""\n'
    return f"{task.signature}\n{doc}{body}\n\n" + "\n".join(task.tests) + "\n"
