"""``robustreid.amp`` against independent references: PyTorch's own autocast (the dtype it returns runs), the CPU
flags the Linux kernel reports in /proc/cpuinfo (native bfloat16 = AVX-512 BF16 or AMX-BF16, as amp.py's docstring
and ``native_bf16`` claim), and the CUDA rule (bfloat16 where the GPU has it, float16 + grad scaler otherwise),
driven without a GPU by replacing ``torch.cuda.is_bf16_supported``."""

import sys
from pathlib import Path

import pytest
import torch

from robustreid.amp import autocast_dtype, native_bf16, needs_grad_scaler


def _cpuinfo_flags() -> set[str]:
    """The first processor's feature flags as the kernel reports them (x86: ``flags``, arm64: ``Features``)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def test_cpu_autocast_dtype_is_bfloat16_and_runs():
    dtype = autocast_dtype("cpu")
    assert dtype == torch.bfloat16 and autocast_dtype(torch.device("cpu")) == dtype
    assert needs_grad_scaler("cpu") is False  # bfloat16 has float32's exponent range
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with torch.autocast("cpu", dtype=dtype):
        out = a @ b
    assert out.dtype == torch.bfloat16  # PyTorch's CPU autocast takes the dtype and casts a matmul to it
    torch.testing.assert_close(out.float(), a @ b, rtol=2e-2, atol=2e-2)


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/cpuinfo").exists(),
                    reason="reads the CPU flags from /proc/cpuinfo (Linux)")
def test_native_bf16_on_cpu_agrees_with_the_kernels_cpu_flags():
    flags = _cpuinfo_flags()
    assert flags, "no flags line in /proc/cpuinfo"
    # bfloat16 arithmetic in hardware: AVX-512 BF16 (Cooper Lake, Sapphire Rapids, Zen 4+) or AMX-BF16 (Sapphire
    # Rapids+) on x86; on arm64 the BF16 extension (kernel flag "bf16"). Plain AVX-512 emulates bfloat16.
    native = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    assert native_bf16("cpu") is native, (
        f"native_bf16('cpu') = {native_bf16('cpu')}, but the CPU flags say {native} "
        f"(bf16-related flags: {sorted(f for f in flags if 'bf16' in f or f.startswith('avx512'))})"
    )
    assert native_bf16(torch.device("cpu")) is native


def test_devices_without_a_rule_have_no_native_bf16():
    assert native_bf16("meta") is False
    assert autocast_dtype("meta") == torch.bfloat16


@pytest.mark.parametrize("bf16", [True, False])
def test_cuda_rule_bfloat16_where_supported_else_float16_with_a_scaler(bf16, monkeypatch):
    # the rule of amp.py's docstring, driven on a machine without a GPU: only is_bf16_supported is consulted
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert autocast_dtype("cuda") == (torch.bfloat16 if bf16 else torch.float16)
    assert autocast_dtype("cuda:1") == autocast_dtype("cuda")
    assert needs_grad_scaler("cuda") is (not bf16)
    assert native_bf16("cuda") is bf16
    # the CPU's answers do not depend on the GPU
    assert autocast_dtype("cpu") == torch.bfloat16 and needs_grad_scaler("cpu") is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rule_on_the_real_gpu():
    major, _ = torch.cuda.get_device_capability()
    assert native_bf16("cuda") is (major >= 8)  # bfloat16 tensor cores from Ampere (compute capability 8.0)
    assert needs_grad_scaler("cuda") is (not torch.cuda.is_bf16_supported())
