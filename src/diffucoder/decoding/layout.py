"""The decoding canvas: left-padded prompts followed by a fully masked completion (Dream's
``diffusion_generate``).

A batch of prompts arrives left-padded, so every completion occupies the same columns
``[P, P + L)``. When there is padding, each row gets position ids that count only its real tokens
(``cumsum(mask) - 1``) and a key mask that hides pad keys; then a prompt decodes the same alone or
in a batch, because its real tokens see the same positions and the same keys either way.
Without padding the model runs with full attention and default positions, as Dream does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Canvas:
    """The sequence being denoised and how to attend over it.

    Attributes:
        x: (B, T) token ids, T = P + L; masked positions hold the mask id.
        prompt_len: P (columns of the left-padded prompt).
        valid: (B, T) bool, True = real token (prompt or completion), False = left padding.
        position_ids: (B, T) positions, or None for the default 0..T-1 (no padding).
        padded: whether any row has padding (then a key-padding mask is needed).
    """

    x: torch.Tensor
    prompt_len: int
    valid: torch.Tensor
    position_ids: torch.Tensor | None
    padded: bool

    @property
    def gen_len(self) -> int:
        return self.x.shape[1] - self.prompt_len

    def key_mask(self, key_cols: torch.Tensor | slice = slice(None)) -> torch.Tensor | None:
        """(B, 1, 1, K) bool, True = real key, for the given key columns; None when nothing is padded.

        This is what the sampler hands the model. One row per sequence, broadcast over heads and
        queries, so no (B, 1, T, T) tensor is built each step, and SDPA's kernel reads a mask that
        is T times smaller. Without padding there is no mask at all (SDPA's maskless kernel), which
        is the case of GRPO's G copies of one prompt. Real queries see exactly the keys they see in
        :meth:`allowed`; pad queries see every real key, which changes only pad outputs (never read,
        never attended to) and leaves no row fully masked.
        """
        if not self.padded:
            return None
        return self.valid[:, key_cols][:, None, None, :]

    def allowed(self, query_cols: torch.Tensor | slice, key_cols: torch.Tensor | slice) -> torch.Tensor:
        """(B, 1, Q, K) bool "may attend" mask for the given query and key columns (per-query form).

        The sampler uses the cheaper :meth:`key_mask`; this form is for callers that need one row
        per query.

        Real queries see real keys only. Pad queries see themselves only when the key set contains
        them: their outputs are never read, but a fully masked row would give NaN in some kernels.
        """
        q_valid = self.valid[:, query_cols]
        k_valid = self.valid[:, key_cols]
        allowed = q_valid[:, None, :, None] & k_valid[:, None, None, :]
        q_idx = torch.arange(self.x.shape[1], device=self.x.device)[query_cols]
        k_idx = torch.arange(self.x.shape[1], device=self.x.device)[key_cols]
        return allowed | (q_idx[:, None] == k_idx[None, :])[None, None]

    def select(self, rows: torch.Tensor) -> Canvas:
        """The canvas of the batch rows ``rows`` (ascending indices), copied.

        ``padded`` stays the whole batch's: whether a key mask is handed to SDPA picks its kernel,
        so each selected row is computed exactly as it is in the full batch even when the selected
        rows themselves have no padding.
        """
        return Canvas(
            x=self.x[rows],
            prompt_len=self.prompt_len,
            valid=self.valid[rows],
            position_ids=None if self.position_ids is None else self.position_ids[rows],
            padded=self.padded,
        )

    def positions(self, cols: torch.Tensor | slice) -> torch.Tensor:
        """(B, len(cols)) position ids of the given columns."""
        if self.position_ids is not None:
            return self.position_ids[:, cols]
        idx = torch.arange(self.x.shape[1], device=self.x.device)[cols]
        return idx[None].expand(self.x.shape[0], -1)


def make_canvas(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, gen_len: int, mask_token_id: int
) -> Canvas:
    """Append ``gen_len`` mask tokens to left-padded prompts and derive positions and validity.

    Args:
        input_ids: (B, P) left-padded prompt ids.
        attention_mask: (B, P) 1 = real token, 0 = left padding; None = no padding.
        gen_len: L, the completion length.
        mask_token_id: id written into every completion position.

    Raises:
        ValueError: on wrong shapes, or padding that is not on the left.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, P), got shape {tuple(input_ids.shape)}")
    batch, prompt_len = input_ids.shape
    if prompt_len < 1:
        raise ValueError("every prompt needs at least one token (position 0 is never predicted)")
    if attention_mask is None:
        prompt_valid = torch.ones_like(input_ids, dtype=torch.bool)
    else:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}"
            )
        prompt_valid = attention_mask.bool()
        # left padding means validity never goes from True back to False along a row
        bad_rows = (prompt_valid[:, :-1] & ~prompt_valid[:, 1:]).any(dim=1).nonzero().flatten().tolist()
        if bad_rows:
            raise ValueError(
                f"attention_mask rows {bad_rows} are not left-padded (a pad follows a real token)"
            )
        empty = (~prompt_valid.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"prompts {empty} have no real tokens")
    completion = torch.full((batch, gen_len), mask_token_id, dtype=input_ids.dtype, device=input_ids.device)
    x = torch.cat([input_ids, completion], dim=1)
    valid = torch.cat([prompt_valid, torch.ones_like(completion, dtype=torch.bool)], dim=1)
    padded = bool((~prompt_valid).any())
    position_ids = None
    if padded:
        # Dream: positions count real tokens only; pads get a harmless dummy position (1)
        position_ids = (valid.long().cumsum(dim=1) - 1).masked_fill(~valid, 1)
    return Canvas(x=x, prompt_len=prompt_len, valid=valid, position_ids=position_ids, padded=padded)
