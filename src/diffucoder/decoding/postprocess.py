"""Turn a decoded completion into text and code (Dream's post-processing; paper §B.2).

Diffusion decoding fills every position, so a completion runs on past its logical end: a base model
writes ``<|endoftext|>``, an instruct model ends its turn with ``<|im_end|>`` and fills the tail with
``<|dlm_pad|>``. We cut at the first of these, then take the first fenced Python block as the program.
Decode with ``skip_special_tokens=False`` so the stop tokens are still in the text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from diffucoder.data.tokenizer import EOS_TOKEN, IM_END, PAD_TOKEN

STOP_TOKENS: tuple[str, ...] = (EOS_TOKEN, PAD_TOKEN, IM_END)

# A fence line: ``` plus an optional language tag.
_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+.-]*)[ \t]*$")
_PYTHON_TAGS = {"python", "py", "python3"}


def cut_completion(text: str, stop_tokens: Iterable[str] = STOP_TOKENS) -> str:
    """Everything before the first stop token (the whole text when none occurs)."""
    cut = len(text)
    for token in stop_tokens:
        found = text.find(token)
        if found != -1:
            cut = min(cut, found)
    return text[:cut]


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """All fenced blocks as (lower-case tag, body), in order; an unclosed last block runs to the end."""
    blocks: list[tuple[str, str]] = []
    tag: str | None = None  # None = outside a block
    body: list[str] = []
    for line in text.split("\n"):
        fence = _FENCE.match(line)
        if tag is None:
            if fence:
                tag, body = fence.group(1).lower(), []
        elif line.lstrip().startswith("```"):  # any fence line closes, even with trailing text
            blocks.append((tag, "\n".join(body)))
            tag = None
        else:
            body.append(line)
    if tag is not None:
        blocks.append((tag, "\n".join(body)))
    return blocks


def extract_code_block(text: str) -> str | None:
    """The body of the first fenced Python block, or None when there is none.

    A block tagged ``python``/``py``/``python3`` wins over an untagged one; a block tagged with
    another language is never taken. An unclosed block (the model ran out of tokens) runs to the
    end of the text.
    """
    blocks = fenced_blocks(text)
    for tag, body in blocks:
        if tag in _PYTHON_TAGS:
            return body
    return next((body for tag, body in blocks if not tag), None)


def stop_token_ids(tokenizer) -> list[int]:
    """Ids of the stop tokens this tokenizer knows (a base tokenizer may lack the chat tokens)."""
    vocab = tokenizer.get_vocab()
    return [vocab[token] for token in STOP_TOKENS if token in vocab]


def completion_length(ids: list[int], stop_ids: Iterable[int]) -> int:
    """Number of completion tokens before the first stop token (all of them when none occurs)."""
    stops = set(stop_ids)
    return next((i for i, token in enumerate(ids) if token in stops), len(ids))
