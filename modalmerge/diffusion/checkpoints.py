"""Checkpoints: build the diffusion model from config, save atomically, load with ``weights_only=True``.

A trained model is one call away: ``diffusion, metadata = load_diffusion(path)``; analysis then
uses it only through :class:`~modalmerge.diffusion.gaussian.GaussianDiffusion`'s methods.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ModalMergeInputError
from ..model import SpatioTemporalDenoiser
from .gaussian import GaussianDiffusion
from .gaussian_baseline import GaussianBaselineDenoiser
from .schedulers import Scheduler, make_sampler

CHECKPOINT_VERSION = 1
SCHEDULER_KEYS = ("n_train_steps", "schedule", "beta_start", "beta_end", "prediction_type", "clip_sample")


def scheduler_kwargs(diffusion_config: dict) -> dict:
    """The schedule's arguments from the ``diffusion`` config block."""
    return {key: diffusion_config[key] for key in SCHEDULER_KEYS}


def build_diffusion(model_config: dict, diffusion_config: dict, grid_shape, n_classes: int, mask: np.ndarray,
                    gradient_checkpointing: bool = False) -> GaussianDiffusion:
    """The denoiser wrapped in its diffusion process, from the ``model`` and ``diffusion`` config blocks
    (with ``model.gaussian_baseline``, the network learns on top of a Gaussian's exact denoiser, whose
    statistics the caller sets with ``diffusion.network.fit`` or a checkpoint's weights)."""
    network = SpatioTemporalDenoiser(
        grid_shape, model_config["clip_length"], n_classes, channels=model_config["channels"],
        attention_levels=model_config.get("attention_levels"), res_blocks=model_config["res_blocks"],
        temporal_heads=model_config["temporal_heads"], temporal_head_dim=model_config["temporal_head_dim"],
        norm_groups=model_config["norm_groups"], dropout=model_config["dropout"],
        gradient_checkpointing=gradient_checkpointing, temporal_levels=model_config.get("temporal_levels") or ())
    scheduler = Scheduler(**scheduler_kwargs(diffusion_config))
    if model_config.get("gaussian_baseline", False):
        network = GaussianBaselineDenoiser(network, mask, n_classes, scheduler,
                                           temporal=model_config.get("gaussian_baseline_temporal", False))
    return GaussianDiffusion(network, scheduler, torch.as_tensor(mask), diffusion_config["label_dropout"],
                             diffusion_config.get("min_snr_gamma"), diffusion_config.get("context_prob", 0.0))


def save_checkpoint_atomic(state: dict, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors, numbers, strings, lists, dicts only)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ModalMergeInputError(f"Checkpoint {path} not found: run the train_diffusion stage first.") from None
    except Exception as err:
        raise ModalMergeInputError(f"Cannot load checkpoint {path}: {err}. Delete it and train again.") from err


def load_diffusion(checkpoint_path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True):
    """Rebuild the diffusion model of a checkpoint: ``(diffusion, metadata)`` (EMA weights by default)."""
    state = load_checkpoint(checkpoint_path, device)
    meta = state["metadata"]
    config = meta["config"]
    diffusion = build_diffusion(config["model"], config["diffusion"], meta["grid_shape"], len(meta["class_names"]),
                                state["model"]["mask"].cpu().numpy())
    diffusion.load_state_dict(state["model"])
    if use_ema:
        diffusion.network.load_state_dict(state["ema"])
    return diffusion.to(device).eval(), meta


def checkpoint_sampler(meta: dict, sampler: str, steps: int | None = None, eta: float = 1.0,
                       variance: str = "small") -> Scheduler:
    """A sampler (``ddpm`` or ``ddim``) on the training schedule recorded in a checkpoint's metadata."""
    return make_sampler(sampler, scheduler_kwargs(meta["config"]["diffusion"]), steps, eta, variance)
