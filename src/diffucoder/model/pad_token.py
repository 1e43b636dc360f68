"""``diffucoder model add-pad SRC DST``: give a diffusion model its own pad token before instruction tuning.

DiffuCoder-7B-Instruct was tuned from DiffuCoder-7B-Base with ``<|dlm_pad|>`` (id 151667) appended
as its pad; the Base, like Dream, pads with ``<|endoftext|>``. A stage started from a model adds no
tokens (nothing is converted on the way), so this is the explicit step that reproduces the recipe:
the token is appended to the tokenizer (or, when the vocabulary already holds it, only made the
pad), its embedding and LM-head rows start at the mean of the tokenizer's other rows, as
:func:`diffucoder.model.build_model` initialises appended tokens, and ``config.json``'s pad id
follows. Every other weight is unchanged. The result is a new sealed model at ``DST``.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffucoder.data.tokenizer import PAD_TOKEN


@dataclass(frozen=True)
class AddPadResult:
    """What ``add-pad`` wrote (also printed by the CLI)."""

    source: str
    destination: str
    pad_token: str
    pad_token_id: int
    appended: bool
    vocab_size: int


def add_pad_token(src: str, dst: str, token: str = PAD_TOKEN) -> AddPadResult:
    """Write the model at ``src`` to ``dst`` with ``token`` as its pad token.

    Raises:
        ValueError: ``token`` is already the pad, or is the model's mask or eos token (a pad must be
            a token of its own: SFT scores pads as the completion's end).
        FileExistsError: ``dst`` already holds files. Nothing is written on any error.
    """
    from diffucoder.model.build import declare_diffusion_config, init_rows_at_mean
    from diffucoder.model.checkpoint import require_empty_destination
    from diffucoder.model.io import load_model, save_model

    require_empty_destination(dst)
    model, tokenizer = load_model(src)
    if token == tokenizer.pad_token:
        raise ValueError(f"{src}: {token!r} is already the pad token (id {tokenizer.pad_token_id})")
    if token in (tokenizer.mask_token, tokenizer.eos_token):
        raise ValueError(f"{src}: {token!r} is the model's mask or eos token; a pad needs a token of its own")
    known = len(tokenizer)
    appended = token not in tokenizer.get_vocab()
    tokenizer.add_special_tokens({"pad_token": token})
    hf = model.hf
    rows = hf.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:  # no spare rows left (DiffuCoder's 152,064 rows have room)
        hf.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    init_rows_at_mean(hf, list(range(known, len(tokenizer))), known)
    declare_diffusion_config(hf.config, tokenizer)
    save_model(model, tokenizer, dst)
    return AddPadResult(
        source=src,
        destination=dst,
        pad_token=token,
        pad_token_id=tokenizer.pad_token_id,
        appended=appended,
        vocab_size=hf.get_input_embeddings().weight.shape[0],
    )
