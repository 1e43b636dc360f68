"""Prompt formats (paper Tables 5-6) and completion -> program post-processing."""

import pytest

from diffucoder.data.tokenizer import train_tokenizer
from diffucoder.evaluation.benchmarks import Problem
from diffucoder.evaluation.prompts import (
    ASSISTANT_PREFILL,
    build_prompt,
    code_from_completion,
    program_from_code,
)

HE = Problem(
    benchmark="humaneval_plus",
    task_id="HumanEval/0",
    prompt='from typing import List\n\ndef f(x: List[int]):\n    """doc"""\n',
    entry_point="f",
    reference="",
    kind="io",
    code_prompt='from typing import List\n\ndef f(x: List[int]):\n    """doc"""\n',
)
MBPP = Problem(
    benchmark="mbpp_plus",
    task_id="Mbpp/2",
    prompt='"""\nWrite g.\nassert g(1) == 2\n"""\n',
    entry_point="g",
    reference="",
    kind="io",
)
TINY = Problem(
    benchmark="tiny_heldout",
    task_id="t0",
    prompt="Write `h(n)` that adds 1.",
    entry_point="h",
    reference="",
    kind="asserts",
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["def f(x):\n    return x + 1\n"] * 4, vocab_size=300)


def test_instruct_prompt_matches_the_paper_templates(tokenizer):
    he = build_prompt(HE, "instruct", "You are a helpful assistant.", tokenizer)
    assert he == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nPlease complete the following problem:\n```\n"
        + HE.prompt.strip()
        + "\n```<|im_end|>\n"
        "<|im_start|>assistant\nHere is the code to solve this problem:\n```python\n"
    )
    mbpp = build_prompt(MBPP, "instruct", "You are a helpful assistant.", tokenizer)
    assert "<|im_start|>user\n```\n" + MBPP.prompt.strip() + "\n```<|im_end|>" in mbpp
    assert mbpp.endswith(ASSISTANT_PREFILL)


def test_tiny_tasks_use_the_sft_user_turn(tokenizer):
    from diffucoder.data.formats import sft_row

    prompt = build_prompt(TINY, "instruct", "", tokenizer)
    trained = sft_row("t0", TINY.prompt, "def h(n):\n    return n + 1")["messages"]
    trained_prompt = tokenizer.apply_chat_template(trained[:1], add_generation_prompt=True, tokenize=False)
    assert prompt == trained_prompt + ASSISTANT_PREFILL
    assert trained[1]["content"].startswith(ASSISTANT_PREFILL)


def test_base_prompts_are_plain_completion():
    assert build_prompt(HE, "base", "ignored", None) == HE.code_prompt
    assert build_prompt(MBPP, "base", "ignored", None) == MBPP.prompt
    assert build_prompt(TINY, "base", "", None) == '"""\nWrite `h(n)` that adds 1.\n"""\n'
    assert program_from_code(HE, "    return x\n", "base") == HE.code_prompt + "    return x\n"


def test_instruct_completion_to_program():
    completion = "def g(x):\n    return x + 1\n```\nSome explanation.\n```python\nprint(1)\n```"
    code = code_from_completion(completion, "instruct")
    assert code == "def g(x):\n    return x + 1"
    assert program_from_code(MBPP, code, "instruct") == code
    # HumanEval: the prompt (imports, helpers, stub) comes first; the model's def replaces the stub
    he_program = program_from_code(HE, "def f(x):\n    return x", "instruct")
    assert he_program.startswith(HE.code_prompt.rstrip()) and he_program.endswith("def f(x):\n    return x")
    # a completion that never closes its fence keeps everything; one with no code gives ""
    assert code_from_completion("x = 1\n", "instruct") == "x = 1\n"
    assert code_from_completion("", "instruct") == ""
