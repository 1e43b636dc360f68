"""Cutting completions at stop tokens and pulling out the first fenced Python block."""

from __future__ import annotations

from diffucoder.decoding.postprocess import (
    completion_length,
    cut_completion,
    extract_code_block,
    stop_token_ids,
)


def test_cut_at_the_first_of_any_stop_token():
    assert cut_completion("x = 1<|im_end|>\n<|dlm_pad|><|dlm_pad|>") == "x = 1"
    assert cut_completion("a<|dlm_pad|>b<|endoftext|>") == "a"
    assert cut_completion("base model text<|endoftext|>junk") == "base model text"
    assert cut_completion("no stop at all") == "no stop at all"


def test_instruct_completion_gives_the_program():
    text = (
        "Here is the code to solve this problem:\n```python\ndef add(a, b):\n    return a + b\n```"
        "<|im_end|>\n<|dlm_pad|><|dlm_pad|>"
    )
    assert extract_code_block(cut_completion(text)) == "def add(a, b):\n    return a + b"


def test_python_tag_wins_and_other_languages_are_skipped():
    text = "```bash\npip install x\n```\n```\nuntagged()\n```\n```py\ntagged()\n```"
    assert extract_code_block(text) == "tagged()"
    assert extract_code_block("```bash\nls\n```\n```\nuntagged()\n```") == "untagged()"


def test_a_closing_fence_is_not_mistaken_for_an_opening_one():
    text = "```js\nlet x\n```\nprose\n```\nprint(1)\n```"
    assert extract_code_block(text) == "print(1)"


def test_unclosed_block_runs_to_the_end():
    assert extract_code_block("```python\ndef f(x):\n    return") == "def f(x):\n    return"


def test_closing_fence_with_trailing_special_token_still_closes():
    assert extract_code_block("```python\nx = 1\n```<|im_end|>") == "x = 1"


def test_no_fence_gives_none():
    assert extract_code_block("def f(): pass") is None
    assert extract_code_block("```bash\nls\n```") is None


def test_completion_length_on_ids(tokenizer):
    stops = stop_token_ids(tokenizer)
    assert len(stops) == 3
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert completion_length([5, 6, eos, 7], stops) == 2
    assert completion_length([5, 6], stops) == 2
