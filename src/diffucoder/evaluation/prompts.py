"""Prompt construction and turning a completion back into a runnable program (paper §B.2, Tables 5-6).

- ``base`` models complete the problem text: the HumanEval signature + docstring, or the MBPP task as
  a docstring; the program is that text followed by the completion.
- ``instruct`` models get the Qwen chat template (system "You are a helpful assistant."). HumanEval's
  user turn is "Please complete the following problem:" with the prompt in a plain fence; MBPP's and
  the tiny tasks' user turn is the prompt in a plain fence with no lead-in. The assistant turn is
  pre-filled with "Here is the code to solve this problem:" and an opening python fence, so the
  completion is code up to the closing fence.

For HumanEval the program always starts with the original prompt: it defines the imports and helper
functions (e.g. ``poly`` for HumanEval/32) that a model rewriting only the entry point relies on, and
the model's own ``def`` of the entry point, coming later, replaces the prompt's stub.
"""

from __future__ import annotations

from diffucoder.evaluation.benchmarks import Problem

ASSISTANT_PREFILL = "Here is the code to solve this problem:\n```python\n"
HUMANEVAL_LEAD_IN = "Please complete the following problem:"


def chat_turn(role: str, content: str) -> str:
    """One Qwen-style chat turn (docs/interfaces.md, "Special tokens")."""
    return f"<|im_start|>{role}\n{content}<|im_end|>\n"


def user_message(problem: Problem) -> str:
    """The paper's user turn for a problem (Table 5 for HumanEval, Table 6 for MBPP)."""
    fenced = f"```\n{problem.prompt.strip()}\n```"
    if problem.benchmark.startswith("humaneval"):
        return f"{HUMANEVAL_LEAD_IN}\n{fenced}"
    return fenced


def base_prompt(problem: Problem) -> str:
    """Text a base model continues: code for HumanEval, the task as a docstring otherwise."""
    if problem.code_prompt:
        return problem.code_prompt
    text = problem.prompt
    return text if text.lstrip().startswith('"""') else f'"""\n{text.strip()}\n"""\n'


def build_prompt(problem: Problem, style: str, system_prompt: str) -> str:
    """The full prompt text fed to the model (special tokens included for ``instruct``)."""
    if style == "base":
        return base_prompt(problem)
    if style == "instruct":
        return (
            chat_turn("system", system_prompt)
            + chat_turn("user", user_message(problem))
            + "<|im_start|>assistant\n"
            + ASSISTANT_PREFILL
        )
    raise ValueError(f"prompt style {style!r} is not one of: instruct, base")


def code_from_completion(completion: str, style: str) -> str:
    """The code a completion contributes (special tokens already cut by the caller).

    Instruct completions continue inside the pre-filled python fence, so the code ends at the
    closing fence; base completions are code as they are.
    """
    if style == "instruct":
        from diffucoder.decoding.postprocess import extract_code_block

        return extract_code_block(ASSISTANT_PREFILL.split("\n", 1)[1] + completion)
    return completion


def program_from_code(problem: Problem, code: str, style: str) -> str:
    """The program executed for a problem, given the code extracted from a completion."""
    if style == "base":
        return base_prompt(problem) + code
    if problem.code_prompt:
        return problem.code_prompt.rstrip() + "\n\n\n" + code
    return code
