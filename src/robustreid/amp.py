"""Mixed precision (``--amp``): which autocast dtype a device gets, and whether it runs bfloat16 natively.

- CPU: bfloat16 (oneDNN; fast where the CPU has AVX-512 BF16 / AMX, emulated and slower elsewhere).
- CUDA: bfloat16 where the GPU supports it (Ampere and later), float16 otherwise; float16 training needs a
  gradient scaler (``needs_grad_scaler``), bfloat16 has float32's range and does not.
"""

from __future__ import annotations

import platform

import torch

__all__ = ["autocast_dtype", "native_bf16", "needs_grad_scaler"]


def autocast_dtype(device: torch.device | str) -> torch.dtype:
    """The autocast dtype of ``--amp`` on ``device``."""
    device = torch.device(device)
    if device.type == "cuda" and not _cuda_native_bf16():
        return torch.float16
    return torch.bfloat16


def needs_grad_scaler(device: torch.device | str) -> bool:
    """True if ``--amp`` training on ``device`` runs float16 and so needs ``torch.amp.GradScaler``."""
    return autocast_dtype(device) == torch.float16


def native_bf16(device: torch.device | str) -> bool:
    """True if ``device`` computes bfloat16 in hardware (so ``--amp`` is a speed-up, not an emulation)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_native_bf16()
    if device.type == "cpu":
        # x86: AVX-512 BF16 or AMX (oneDNN's _is_mkldnn_bf16_supported also says yes on any AVX-512 CPU, where
        # bfloat16 is emulated); elsewhere (arm64's BF16 extension) oneDNN's own check
        try:
            if platform.machine().lower() in ("x86_64", "amd64", "i686", "x86"):
                return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _cuda_native_bf16() -> bool:
    """Ampere and later; older GPUs emulate bfloat16 (``is_bf16_supported``'s default counts emulation)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # PyTorch without the keyword
        return torch.cuda.is_bf16_supported()
