"""Where code runs: the torch device and the number of CPU threads a stage may use."""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from .errors import ModalMergeInputError


def usable_threads(requested: int) -> int:
    """``requested`` capped at the CPU cores this process may use (oversubscription was measured
    to slow training more than 2x on a 2-core machine)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    return max(1, min(int(requested), available))


def choose_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:1`` as given."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModalMergeInputError(f"train.device is {requested!r} but CUDA is not available here; use 'auto' or 'cpu'.")
    return torch.device(requested)


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (elsewhere bf16 is emulated and slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def inference_precision(device: torch.device, requested: str) -> str:
    """The precision of the trained model's many forward passes (sampling, diffusion classifier,
    diffusion detector): ``float32``, ``bfloat16``, or ``auto`` = bfloat16 where the device computes it
    natively (:func:`native_bfloat16`), else float32."""
    if requested == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    if requested not in ("float32", "bfloat16"):
        raise ModalMergeInputError(f"train.inference_precision is {requested!r}: use auto, float32 or bfloat16.")
    return requested


def model_autocast(device: torch.device, precision: str):
    """bfloat16 autocast on ``device`` for ``precision`` ``bfloat16`` (weights stay float32; matrix
    products and convolutions run in bf16), a no-op for ``float32``."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16" else nullcontext()
