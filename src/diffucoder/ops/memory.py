"""Memory per GPU of one training stage: weights, gradients, optimizer states, buffers, activations.

Counted from what the code actually keeps, not from a rule of thumb:

- **Weights, gradients, optimizer** follow the ZeRO paper's accounting (Rajbhandari et al. 2020,
  arXiv 1910.02054 §5) for the DeepSpeed optimizers this project's loop gets
  (``train/deepspeed_config.py``): with ``bf16`` DeepSpeed keeps fp32 master weights, fp32
  gradients and two fp32 Adam moments beside the bf16 weights; with ``fp32``/``bf16-mixed`` the
  weights are the fp32 master and ZeRO-1/2 still keeps its own fp32 copy of the rank's partition.
  ZeRO-2 partitions gradients and optimizer states over the data-parallel ranks, ZeRO-3 also the
  weights (except tensors below DeepSpeed's persistence threshold, which stay whole).
- **Buffers**: ZeRO-2/3 stage gradients in a bucket of ``reduce_bucket_size`` elements (DeepSpeed's
  default 5e8), allocated whole whatever the model's size. ZeRO-3 also holds gathered weights of
  the layers in flight.
- **Activations**: what autograd saves per decoder layer and token for the Qwen2 layer (two
  RMSNorms that upcast to fp32, q/k/v/o projections, RoPE, SDPA that saves q, k, v, its output and
  the log-sum-exp, SwiGLU), per precision mode; ``tests/ops/test_memory.py`` checks the counts
  against the bytes autograd really saves. Gradient checkpointing keeps each layer's input and
  recomputes one layer at a time.
- **Logits**: the loss's peak at the LM head, ``12 * N * V`` bytes for N scored positions
  (log-softmax output, its gradient and the input gradient in fp32), at the worst step: every
  position scored (the causal phase of stage 1, or a diffusion step with t near 1).

Not counted: the framework's own resident memory (CUDA context, NCCL, the Python and torch runtime),
which ``plan.memory_reserve_gib`` covers, and stage 4's rollout KV caches, which hold no gradients
and are smaller than the training pass that follows them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from diffucoder.model.config import ModelConfig

# DeepSpeed defaults (deepspeed/runtime/zero/config.py); the training loop does not override them.
REDUCE_BUCKET_ELEMENTS = 500_000_000
PREFETCH_BUCKET_ELEMENTS = 50_000_000
PERSISTENCE_THRESHOLD = 100_000
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LOGIT_BYTES_PER_ELEMENT = 12  # fp32 log-softmax output + its gradient + the input gradient


def param_tensors(model: ModelConfig, vocab_size: int) -> list[int]:
    """Element counts of every parameter tensor of the Qwen2 diffusion LM (what DeepSpeed partitions)."""
    h, i = model.hidden_size, model.intermediate_size
    kv = h // model.num_attention_heads * model.num_key_value_heads
    layer = [
        h * h,
        h,
        h * kv,
        kv,
        h * kv,
        kv,
        h * h,
        h * i,
        h * i,
        i * h,
        h,
        h,
    ]  # q(+b) k(+b) v(+b) o mlp norms
    tensors = [vocab_size * h] + layer * model.num_hidden_layers + [h]
    if not model.tie_word_embeddings:
        tensors.append(vocab_size * h)
    return tensors


def n_params(model: ModelConfig, vocab_size: int) -> int:
    return sum(param_tensors(model, vocab_size))


def activation_bytes_per_token(model: ModelConfig, precision: str) -> float:
    """Bytes autograd saves per decoder layer and token (no gradient checkpointing).

    ``bf16``: bf16 tensors, the RMSNorms' fp32 upcasts. ``fp32``: fp32 everywhere. ``bf16-mixed``:
    fp32 residual stream and norms under a bf16 autocast; each projection casts the fp32 norm output
    to bf16 on its own (autocast caches casts of weights only), and ``sdpa_fp32`` attention saves
    fp32 copies of q, k, v and its output.
    """
    h, i = model.hidden_size, model.intermediate_size
    kv = h // model.num_attention_heads * model.num_key_value_heads
    if precision == "fp32":
        norms = 2 * 12 * h  # fp32 input, normalised input, output (saved by the projections)
        attention = 4 * (h + kv + kv + h + h)  # rotated q, rotated k, v, SDPA output, o_proj input
        mlp = 4 * 4 * i  # gate, silu(gate), up, product
        return norms + attention + mlp
    if precision == "bf16":
        norms = 2 * (4 * h + 2 * h + 2 * h)  # fp32 upcast, bf16 normalised, bf16 output
        attention = 2 * (h + kv + kv + h + h)
        mlp = 2 * 4 * i
        return norms + attention + mlp
    if precision == "bf16-mixed":
        norms = (8 * h + 3 * 2 * h) + (8 * h + 2 * 2 * h)  # fp32 in/normalised + one bf16 cast per projection
        if model.attn_implementation == "sdpa_fp32":
            attention = 4 * (h + kv + kv + h) + 2 * h  # fp32 q, k, v, output; bf16 o_proj input
        else:
            attention = 2 * (h + kv + kv + h + h)
        mlp = 2 * 4 * i
        return norms + attention + mlp
    raise ValueError(f"precision {precision!r}: expected bf16, bf16-mixed or fp32")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU (rank) at the peak of a training step, by what holds them."""

    weights: float
    gradients: float
    optimizer: float
    buffers: float
    reference: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return sum(asdict(self).values())

    def as_gib(self) -> dict[str, float]:
        return {k: v / 2**30 for k, v in {**asdict(self), "total": self.total}.items()}


def _sharded(tensors: list[int], zero_stage: int, ranks: int) -> float:
    """Elements of the weights one rank keeps resident: ZeRO-3 keeps only small tensors whole."""
    if zero_stage < 3:
        return float(sum(tensors))
    persistent = sum(t for t in tensors if t < PERSISTENCE_THRESHOLD)
    return persistent + (sum(tensors) - persistent) / ranks


def state_bytes(
    tensors: list[int], *, zero_stage: int, precision: str, weight_bytes: int, ranks: int
) -> tuple[float, float, float, float]:
    """(weights, gradients, optimizer, buffers) bytes per rank for AdamW under DeepSpeed."""
    psi = float(sum(tensors))
    part = psi / ranks if zero_stage >= 2 else psi
    if precision == "bf16":
        if zero_stage == 0:  # DeepSpeed's BF16_Optimizer: bf16 grads + fp32 grad accumulator + fp32 master
            grads, optimizer = 2 * psi + 4 * psi, 12 * psi
        else:  # fp32 gradient partition, fp32 master + Adam moments of the partition
            grads, optimizer = 4 * part, 12 * part
    else:
        if zero_stage == 0:  # the torch optimizer on the fp32 weights
            grads, optimizer = 4 * psi, 8 * psi
        else:  # ZeRO keeps an fp32 copy of the partition besides the fp32 weights
            grads, optimizer = 4 * part, 12 * part
    weights = weight_bytes * _sharded(tensors, zero_stage, ranks)
    buffers = 0.0
    if zero_stage >= 2:
        buffers += weight_bytes * REDUCE_BUCKET_ELEMENTS
    if zero_stage == 3:  # weights of the layers in flight, gathered from the other ranks
        layer = max(tensors)
        buffers += weight_bytes * min(psi - _sharded(tensors, 3, ranks), PREFETCH_BUCKET_ELEMENTS + 2 * layer)
    return weights, grads, optimizer, buffers


def training_memory(
    model: ModelConfig,
    *,
    vocab_size: int,
    zero_stage: int,
    precision: str,
    ranks: int,
    rows: int,
    seq_len: int,
    scored_positions: int,
    reference_copy: bool = False,
) -> MemoryEstimate:
    """Peak bytes per rank of one optimizer step.

    Args:
        rows, seq_len: the sequences one forward pass sees (micro-batch rows; stage 4: rows of all
            estimator copies) and their length.
        scored_positions: positions the LM head and loss run at in that pass.
        reference_copy: stage 4 with a KL term keeps a frozen full replica of the policy.
    """
    tensors = param_tensors(model, vocab_size)
    weight_bytes = 2 if precision == "bf16" else DTYPE_BYTES[model.dtype]
    weights, grads, optimizer, buffers = state_bytes(
        tensors,
        zero_stage=zero_stage,
        precision=precision,
        weight_bytes=weight_bytes,
        ranks=ranks,
    )
    tokens = rows * seq_len
    per_layer = activation_bytes_per_token(model, precision)
    if model.gradient_checkpointing:
        residual = 2 if precision == "bf16" else 4
        activations = tokens * (model.num_hidden_layers * residual * model.hidden_size + per_layer)
    else:
        activations = tokens * model.num_hidden_layers * per_layer
    if precision == "bf16-mixed":  # autocast keeps a bf16 copy of every weight for the step
        activations += 2 * _sharded(tensors, zero_stage, ranks)
    head_input = (2 if precision == "bf16" else 4) * model.hidden_size
    logits = scored_positions * (LOGIT_BYTES_PER_ELEMENT * vocab_size + head_input)
    reference = weight_bytes * sum(tensors) if reference_copy else 0.0
    return MemoryEstimate(weights, grads, optimizer, buffers, reference, activations, logits)
