"""Which numeric precision a training stage runs in, and why: ``precision: auto`` per device.

bfloat16 pays off only where the hardware computes it natively. On a CPU with AVX512-BF16 or AMX,
a bfloat16-autocast forward makes the tiny model's steps ~1.3x faster than float32; on a CPU
without them (AVX2-only x86, e.g. AMD EPYC before Zen 4) torch emulates bfloat16 and the same steps
run 13-17x slower (BENCHMARKS.md ``## train``). So ``auto`` asks torch what this CPU can do:

- ``torch.backends.cpu.get_cpu_capability()``: the vector ISA torch's own kernels dispatch to
  (``AVX512``, ``AVX2``, ...; lowered by ``ATEN_CPU_CAPABILITY``);
- ``torch.cpu._is_avx512_bf16_supported()`` / ``torch.cpu._is_amx_tile_supported()``: the CPUID
  flags ``avx512_bf16`` and ``amx_tile`` as torch's bundled cpuinfo reads them (the same checks
  torch's compiler uses to pick bfloat16 kernels);
- ``DNNL_MAX_CPU_ISA`` / ``ONEDNN_MAX_CPU_ISA``: a cap on the ISA oneDNN, which runs torch's
  bfloat16 matmuls, may use.

Native bfloat16 = a bfloat16 ISA flag, AVX512 kernels in torch, and no oneDNN cap below the
bfloat16 ISAs. The decision itself is :func:`choose_precision`, a pure function of the detected
:class:`CpuFeatures`, so it is tested with real capability values and recorded with its reason.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

# oneDNN ISA names (DNNL_MAX_CPU_ISA) below AVX512_CORE_BF16: a cap at one of these leaves oneDNN
# without native bfloat16 instructions. Newer names (AVX512_CORE_BF16, ..._AMX, AVX10_*) and ALL are not caps.
ONEDNN_ISAS_WITHOUT_BF16 = frozenset(
    {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}
)
AVX512_CAPABILITIES = frozenset({"AVX512"})  # torch's ATen dispatch levels with AVX512 kernels


@dataclass(frozen=True)
class CpuFeatures:
    """What torch reports about this CPU, as far as bfloat16 speed depends on it."""

    model: str
    capability: str  # torch.backends.cpu.get_cpu_capability()
    avx512_bf16: bool
    amx: bool
    onednn_max_isa: str = ""  # DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA, "" when unset

    @classmethod
    def detect(cls) -> CpuFeatures:
        return cls(
            model=cpu_model_name(),
            capability=torch.backends.cpu.get_cpu_capability(),
            avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
            amx=bool(torch.cpu._is_amx_tile_supported()),
            onednn_max_isa=(
                os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
            ).upper(),
        )

    @property
    def native_bf16(self) -> bool:
        return (
            (self.avx512_bf16 or self.amx)
            and self.capability in AVX512_CAPABILITIES
            and self.onednn_max_isa not in ONEDNN_ISAS_WITHOUT_BF16
        )

    def describe(self) -> str:
        """``<model>: torch cpu_capability AVX2, avx512_bf16 no, amx no`` (+ the oneDNN cap if set)."""
        text = (
            f"{self.model}: torch cpu_capability {self.capability}, "
            f"avx512_bf16 {'yes' if self.avx512_bf16 else 'no'}, amx {'yes' if self.amx else 'no'}"
        )
        return text + (f", oneDNN capped at {self.onednn_max_isa}" if self.onednn_max_isa else "")


def _cpuinfo_field(name: str) -> str:
    """The first ``name`` field of /proc/cpuinfo ("" off Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return ""


def cpu_model_name() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU flags the kernel reports (/proc/cpuinfo ``flags``; empty off Linux)."""
    return frozenset(_cpuinfo_field("flags").split())


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a stage trains in and the sentence that says why (run summary, MLflow params)."""

    precision: str
    reason: str
    warning: str = ""  # set when an explicit choice is known to be slow on this hardware


def choose_precision(
    requested: str,
    device_type: str,
    *,
    mixed_supported: bool = True,
    cpu: CpuFeatures | None = None,
    cuda_bf16: bool = False,
) -> PrecisionChoice:
    """Resolve a stage's ``precision`` setting for the device it runs on.

    Args:
        requested: the config value: ``auto``, ``bf16``, ``bf16-mixed`` or ``fp32``.
        device_type: ``cuda`` or ``cpu``.
        mixed_supported: whether the stage can train in ``bf16-mixed`` (stage 4 cannot: its ratios
            compare passes made inside and outside the training step's autocast).
        cpu: the CPU's features (needed for ``auto`` on CPU).
        cuda_bf16: ``torch.cuda.is_bf16_supported()`` (for ``auto`` on CUDA).
    """
    if requested != "auto":
        warning = ""
        if requested in ("bf16", "bf16-mixed") and device_type == "cpu" and cpu and not cpu.native_bf16:
            warning = (
                f"precision={requested} on a CPU without native bfloat16 runs many times slower than fp32 "
                f"({cpu.describe()}); use precision=auto or fp32"
            )
        return PrecisionChoice(requested, "set in the config", warning)
    if device_type == "cuda":
        if cuda_bf16:
            return PrecisionChoice("bf16", "auto: the GPU supports bfloat16")
        return PrecisionChoice("fp32", "auto: the GPU has no bfloat16 support")
    if cpu is None:
        raise ValueError("precision=auto on CPU needs the CPU's features (CpuFeatures.detect())")
    if not cpu.native_bf16:
        return PrecisionChoice("fp32", f"auto: no native bfloat16 on this CPU ({cpu.describe()})")
    if not mixed_supported:
        return PrecisionChoice(
            "fp32", f"auto: this stage keeps float32 on CPU (no bf16-mixed); CPU {cpu.describe()}"
        )
    return PrecisionChoice("bf16-mixed", f"auto: native bfloat16 on this CPU ({cpu.describe()})")


def precision_for(requested: str, device: torch.device, *, mixed_supported: bool = True) -> PrecisionChoice:
    """:func:`choose_precision` with the features of this process's device detected."""
    if device.type == "cuda":
        return choose_precision(
            requested, "cuda", mixed_supported=mixed_supported, cuda_bf16=torch.cuda.is_bf16_supported()
        )
    return choose_precision(requested, "cpu", mixed_supported=mixed_supported, cpu=CpuFeatures.detect())
