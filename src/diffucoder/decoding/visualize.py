"""Pictures of a decoding order: a heatmap PNG for a batch, and a terminal replay for one completion.

The heatmap shows, for each sequence (row) and completion position (column), *when* the position was
unmasked, as a fraction of that sequence's steps: a left-to-right decoder gives a smooth left-to-right
gradient; the paper's "entropy sink" and right-side-first (pads) behaviour show as bright blocks.
"""

from __future__ import annotations

import io

import torch


def decode_order_figure(trace: torch.Tensor, title: str | None = None):
    """A matplotlib Figure of a (B, L) trace (rows = sequences, colour = relative unmask step).

    Uses the non-interactive Agg backend, so it works on headless machines and in pipeline pods.
    """
    from matplotlib.figure import Figure

    if trace.dim() != 2:
        raise ValueError(f"trace must be (B, L), got shape {tuple(trace.shape)}")
    steps = trace.float()
    last = steps.amax(dim=1, keepdim=True).clamp(min=1)
    relative = (steps / last).cpu().numpy()
    batch, length = relative.shape
    fig = Figure(figsize=(min(16, 2 + length / 24), min(12, 1.5 + batch * 0.3)))
    ax = fig.add_subplot()
    image = ax.imshow(relative, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("completion position")
    ax.set_ylabel("sequence")
    ax.set_title(title or "decode order (0 = first step, 1 = last)")
    fig.colorbar(image, ax=ax, label="unmask step / last step")
    fig.tight_layout()
    return fig


def save_decode_order_png(trace: torch.Tensor, uri: str, title: str | None = None) -> None:
    """Render :func:`decode_order_figure` to a PNG at a local path or ``s3://`` URI (atomic write)."""
    from diffucoder import storage

    buffer = io.BytesIO()
    decode_order_figure(trace, title).savefig(buffer, format="png", dpi=100)
    storage.write_bytes(uri, buffer.getvalue())


def render_unmasking(pieces: list[str], steps: list[int], frames: int = 8, hidden: str = "\u00b7") -> str:
    """A terminal replay of one completion: ``frames`` snapshots from the first step to the last.

    Args:
        pieces: the completion's tokens as text, one per position.
        steps: the step at which each position was unmasked (its trace row).
        frames: how many snapshots to show, from the first step to the last (the finished text).
        hidden: the character drawn for each character of a still-masked token.

    Returns:
        Text with one block per snapshot, headed by its step; whitespace inside hidden tokens is
        kept so the layout does not jump between frames.
    """
    if len(pieces) != len(steps):
        raise ValueError(f"{len(pieces)} tokens but {len(steps)} trace steps")
    if not steps:
        return ""
    last = max(steps)
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    # evenly spaced from the first step to the last (the finished text)
    cut_points = sorted({last * i // (frames - 1) for i in range(frames)}) if frames > 1 else [last]
    blocks = []
    for upto in cut_points:
        shown = "".join(
            piece if step <= upto else "".join(c if c.isspace() else hidden for c in piece)
            for piece, step in zip(pieces, steps, strict=True)
        )
        decoded = sum(step <= upto for step in steps)
        blocks.append(f"--- step {upto} ({decoded}/{len(steps)} tokens) ---\n{shown}")
    return "\n".join(blocks)
