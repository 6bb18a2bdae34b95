"""Numeric precision for running the model: fp32, or bf16/fp16 autocast, and the attention kernel
that goes with it. Shared by inference and pre-training, so both make the same choice."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from .checks import check_precision
from .errors import BadInput


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 on a CUDA GPU that supports it (else fp16), bf16 on a CPU with bf16
    instructions (AVX512-BF16 or AMX), else fp32. Other values are checked and returned."""
    if check_precision(precision) != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise _fp16_needs_cuda()
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_fast_bf16():
        return "bf16"
    return "fp32"


def cpu_has_fast_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU computes in bf16 natively (x86 AVX512-BF16 or AMX); elsewhere bf16 is
    emulated and slower than fp32."""
    try:
        flags = next(
            (line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), ""
        ).split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_for(precision: str, device: torch.device):
    """The autocast context for a resolved precision (fp32: none); fp16 only on CUDA."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise _fp16_needs_cuda()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _fp16_needs_cuda() -> BadInput:
    return BadInput(
        "precision fp16 needs a CUDA device", "choose bf16 or fp32 in {precision} on this machine"
    )


def fused_attention_for(precision: str, device: torch.device) -> bool:
    """PyTorch's fused attention kernel, except under bf16 on a CPU, where plain matmul +
    softmax was measured 1.3-1.4x faster (bench/RESULTS.md)."""
    return not (device.type == "cpu" and precision == "bf16")
