"""Prompt construction and turning a completion back into a runnable program (paper §B.2, Tables 5-6).

- ``base`` models complete the problem text: the HumanEval signature + docstring, or the MBPP task as
  a docstring; the program is that text followed by the completion.
- ``instruct`` models get the tokenizer's (Qwen-style) chat template, with the system turn
  "You are a helpful assistant." unless configured empty. HumanEval's user turn is "Please complete
  the following problem:" with the prompt in a plain fence; MBPP's is the prompt in a plain fence with
  no lead-in; a tiny task's is its instruction exactly as the stage-3 SFT data shows it (data.formats),
  so the held-out score measures the trained skill and not a prompt shift. The assistant turn is
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


def user_message(problem: Problem) -> str:
    """The paper's user turn for a problem (Table 5 for HumanEval, Table 6 for MBPP)."""
    if problem.benchmark == "tiny_heldout":
        return problem.prompt
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


def build_prompt(problem: Problem, style: str, system_prompt: str, tokenizer) -> str:
    """The full prompt text fed to the model (chat special tokens included for ``instruct``)."""
    if style == "base":
        return base_prompt(problem)
    if style == "instruct":
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": user_message(problem)})
        chat = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return chat + ASSISTANT_PREFILL
    raise ValueError(f"prompt style {style!r} is not one of: instruct, base")


def code_from_completion(completion: str, style: str) -> str:
    """The code a completion contributes (special tokens already cut by the caller).

    Instruct completions continue inside the pre-filled python fence, so the code ends at the
    closing fence; base completions are code as they are.
    """
    if style == "instruct":
        from diffucoder.decoding.postprocess import extract_code_block

        return extract_code_block(ASSISTANT_PREFILL.split("\n", 1)[1] + completion) or ""
    return completion


def program_from_code(problem: Problem, code: str, style: str) -> str:
    """The program executed for a problem, given the code extracted from a completion."""
    if style == "base":
        return base_prompt(problem) + code
    if problem.code_prompt:
        return problem.code_prompt.rstrip() + "\n\n\n" + code
    return code
