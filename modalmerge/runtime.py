"""Where code runs: the torch device and the number of CPU threads a stage may use."""

from __future__ import annotations

import os

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
