"""Chat rows for stage 3 (instruction tuning), padded to a fixed length with the pad token.

Rows are ``{"id", "messages": [..., {"role": "assistant", "content": ...}]}`` in JSONL or Parquet
(docs/interfaces.md), or OpenCoder-SFT-style ``{"instruction", "output"}`` rows, which are turned
into that form as they are read (:func:`diffucoder.data.formats.opencoder_to_sft`). The prompt is
every message but the last, rendered with the tokenizer's chat template and the generation prompt;
the response is the last (assistant) message closed with ``<|im_end|>`` as the template renders it.
Every example is then padded to exactly ``seq_len`` with the tokenizer's pad (``<|dlm_pad|>`` for
ours and DiffuCoder-Instruct's): the pads are ordinary response tokens (maskable and scored), which
is how the model learns to end a completion (paper §B.1). ``prompt_mask`` marks the prompt so the
conditional mask can keep it un-noised.

SFT sets are small next to pre-training corpora, so all rows are tokenised once at start-up: a bad
row fails before the first step, and the error names the file, the row and the field.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from transformers import PreTrainedTokenizerBase

from diffucoder import storage
from diffucoder.data.tokenizer import IM_END
from diffucoder.train.batches import epoch_rng

SFT_SUFFIXES = (".jsonl", ".parquet")


def sft_files(data_uri: str) -> list[str]:
    """The SFT files at ``data_uri``: the file itself, or every ``*.jsonl``/``*.parquet`` under the dir."""
    if data_uri.endswith(SFT_SUFFIXES):
        if not storage.exists(data_uri):
            raise FileNotFoundError(f"{data_uri}: SFT file does not exist")
        return [data_uri]
    found = [u for u in storage.list_files(data_uri) if u.endswith(SFT_SUFFIXES)]
    if not found:
        raise FileNotFoundError(f"{data_uri}: no *.jsonl or *.parquet SFT files")
    return found


def read_rows(uri: str) -> list[dict]:
    """All rows of one JSONL or Parquet file (errors name the file and line)."""
    data = storage.read_bytes(uri)
    if uri.endswith(".parquet"):
        try:
            return pq.read_table(io.BytesIO(data)).to_pylist()
        except pa.ArrowException as exc:
            raise ValueError(f"{uri}: not a readable Parquet file: {exc}") from exc
    rows = []
    for line_no, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{uri}: line {line_no}: invalid JSON: {exc}") from exc
    return rows


def chat_rows(rows: list[dict], uri: str) -> list[dict]:
    """A file's rows as chat rows: OpenCoder-style files (``instruction``/``output``) are converted."""
    if rows and isinstance(rows[0], dict) and "messages" not in rows[0] and "instruction" in rows[0]:
        from diffucoder.data.formats import opencoder_to_sft

        return opencoder_to_sft(rows, uri)
    return rows


def _check_messages(row: dict, where: str) -> list[dict]:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: field 'messages' is missing or empty (expected a list of chat turns)")
    for i, msg in enumerate(messages):
        if (
            not isinstance(msg, dict)
            or not isinstance(msg.get("role"), str)
            or not isinstance(msg.get("content"), str)
        ):
            raise ValueError(
                f"{where}: messages[{i}] needs string fields 'role' and 'content', got {msg!r:.120}"
            )
    if messages[-1]["role"] != "assistant":
        raise ValueError(
            f"{where}: the last message must be the assistant's answer, got role {messages[-1]['role']!r}"
        )
    if len(messages) < 2:
        raise ValueError(f"{where}: field 'messages' has no prompt turn before the assistant answer")
    return messages


def encode_example(
    messages: list[dict], tokenizer: PreTrainedTokenizerBase, seq_len: int, where: str
) -> dict[str, np.ndarray]:
    """One chat example -> ``input_ids`` (seq_len,) padded with the pad token and ``prompt_mask`` (seq_len,) bool.

    Raises:
        ValueError: prompt + response longer than ``seq_len`` (naming ``where`` and both lengths).
    """
    prompt_text = tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=False)
    response_text = messages[-1]["content"] + IM_END + "\n"
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    length = len(prompt) + len(response)
    if length > seq_len:
        raise ValueError(
            f"{where}: {length} tokens (prompt {len(prompt)} + response {len(response)}) exceed "
            f"instruct.seq_len={seq_len}; raise instruct.seq_len or drop the row"
        )
    ids = np.full(seq_len, tokenizer.pad_token_id, dtype=np.int64)
    ids[:length] = prompt + response
    prompt_mask = np.zeros(seq_len, dtype=bool)
    prompt_mask[: len(prompt)] = True
    return {"input_ids": ids, "prompt_mask": prompt_mask}


class SFTExamples:
    """A :class:`~diffucoder.train.batches.SampleSource` of fixed-length chat examples (global shuffle per epoch).

    Args:
        data_uri: one JSONL/Parquet file or a dir of them (local or ``s3://``).
        tokenizer: must have a chat template and a pad token (ours and DiffuCoder-Instruct's:
            ``<|dlm_pad|>``; a Dream checkpoint's: ``<|endoftext|>``).
        seq_len: fixed length of every example (paper: 2048).
    """

    def __init__(self, data_uri: str, tokenizer: PreTrainedTokenizerBase, seq_len: int):
        if tokenizer.pad_token_id is None:
            raise ValueError(
                "tokenizer has no pad token; a base tokenizer gets one from "
                "diffucoder.data.tokenizer.add_diffusion_tokens"
            )
        ids, masks = [], []
        for uri in sft_files(data_uri):
            for r, row in enumerate(chat_rows(read_rows(uri), uri)):
                where = f"{uri}: row {r}" + (
                    f" (id={row['id']!r})" if isinstance(row, dict) and "id" in row else ""
                )
                example = encode_example(_check_messages(row, where), tokenizer, seq_len, where)
                ids.append(example["input_ids"])
                masks.append(example["prompt_mask"])
        if not ids:
            raise ValueError(f"{data_uri}: no SFT rows (empty file)")
        self.input_ids = np.stack(ids)  # (N, T)
        self.prompt_mask = np.stack(masks)  # (N, T)

    def __len__(self) -> int:
        return len(self.input_ids)

    def order(self, epoch: int, seed: int) -> np.ndarray:
        return epoch_rng(seed, epoch).permutation(len(self))

    def get(self, index: int) -> dict[str, np.ndarray]:
        return {"input_ids": self.input_ids[index], "prompt_mask": self.prompt_mask[index]}
