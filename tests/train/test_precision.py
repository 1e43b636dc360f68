"""``precision: auto`` per device: the decision from real CPU capability values, and the detection itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from diffucoder.train.precision import CpuFeatures, choose_precision, cpu_flags

# (CPU, what torch reports on it) -> the precision auto must pick for stages 1-3
CPUS = [
    (CpuFeatures("AMD EPYC 7B13 (Zen 3)", "AVX2", avx512_bf16=False, amx=False), "fp32"),
    (CpuFeatures("Intel Xeon Platinum 8168 (Skylake)", "AVX512", avx512_bf16=False, amx=False), "fp32"),
    (CpuFeatures("Intel Xeon Platinum 8380 (Ice Lake)", "AVX512", avx512_bf16=False, amx=False), "fp32"),
    (CpuFeatures("AMD EPYC 9654 (Zen 4)", "AVX512", avx512_bf16=True, amx=False), "bf16-mixed"),
    (
        CpuFeatures("Intel Xeon Platinum 8480+ (Sapphire Rapids)", "AVX512", avx512_bf16=True, amx=True),
        "bf16-mixed",
    ),
    # the same Sapphire Rapids with torch's kernels capped (ATEN_CPU_CAPABILITY=avx2) or oneDNN capped
    (CpuFeatures("Sapphire Rapids", "AVX2", avx512_bf16=True, amx=True), "fp32"),
    (CpuFeatures("Sapphire Rapids", "AVX512", avx512_bf16=True, amx=True, onednn_max_isa="AVX2"), "fp32"),
    (CpuFeatures("Sapphire Rapids", "AVX512", True, True, onednn_max_isa="AVX512_CORE_AMX"), "bf16-mixed"),
    (CpuFeatures("Cascade Lake", "AVX512", avx512_bf16=False, amx=False, onednn_max_isa="ALL"), "fp32"),
]


@pytest.mark.parametrize(("cpu", "expected"), CPUS, ids=[c.model for c, _ in CPUS])
def test_auto_on_cpu_follows_native_bf16(cpu, expected):
    choice = choose_precision("auto", "cpu", cpu=cpu)
    assert choice.precision == expected
    assert cpu.model in choice.reason and f"cpu_capability {cpu.capability}" in choice.reason
    assert choice.reason.startswith("auto: native bfloat16") == (expected == "bf16-mixed")


def test_auto_keeps_fp32_for_a_stage_without_mixed_precision():
    spr = CPUS[4][0]
    choice = choose_precision("auto", "cpu", cpu=spr, mixed_supported=False)
    assert choice.precision == "fp32" and "keeps float32" in choice.reason


def test_auto_on_cuda_follows_bf16_support():
    assert choose_precision("auto", "cuda", cuda_bf16=True).precision == "bf16"
    no_bf16 = choose_precision("auto", "cuda", cuda_bf16=False)
    assert no_bf16.precision == "fp32" and "no bfloat16" in no_bf16.reason


def test_explicit_setting_is_kept_and_warns_where_it_is_slow():
    zen3 = CPUS[0][0]
    for requested in ("fp32", "bf16", "bf16-mixed"):
        choice = choose_precision(requested, "cpu", cpu=zen3)
        assert (choice.precision, choice.reason) == (requested, "set in the config")
        assert bool(choice.warning) == (requested != "fp32")
    assert "AMD EPYC 7B13" in choose_precision("bf16-mixed", "cpu", cpu=zen3).warning
    assert choose_precision("bf16-mixed", "cpu", cpu=CPUS[4][0]).warning == ""


def test_auto_on_cpu_needs_the_features():
    with pytest.raises(ValueError, match="CpuFeatures.detect"):
        choose_precision("auto", "cpu")


def test_detection_agrees_with_the_kernels_cpu_flags():
    """torch's cpuinfo and the kernel's /proc/cpuinfo name the same bfloat16 features."""
    flags = cpu_flags()
    assert "avx2" in flags or "sse2" in flags, "no x86 flags read from /proc/cpuinfo"
    features = CpuFeatures.detect()
    assert features.avx512_bf16 == ("avx512_bf16" in flags)
    assert features.amx == ("amx_tile" in flags)
    assert features.model and features.model != "unknown CPU"


def _detect_in_subprocess(env: dict[str, str]) -> dict:
    code = (
        "import json; from diffucoder.train.precision import CpuFeatures, choose_precision as c; "
        "f = CpuFeatures.detect(); ch = c('auto', 'cpu', cpu=f); "
        "print(json.dumps({'capability': f.capability, 'precision': ch.precision, 'reason': ch.reason}))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA")}
    out = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_avx2_capped_torch_trains_in_fp32():
    """With torch's kernels and oneDNN capped at AVX2 (how an AVX2-only CPU is emulated), the real
    detection reports AVX2 and auto picks fp32, whatever this CPU's own flags are."""
    capped = _detect_in_subprocess({"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2"})
    assert capped["capability"] == "AVX2"
    assert capped["precision"] == "fp32" and "no native bfloat16" in capped["reason"]
    native = _detect_in_subprocess({})
    assert native["precision"] == ("bf16-mixed" if CpuFeatures.detect().native_bf16 else "fp32")
