"""Diffusion layer: schedules and samplers, :class:`GaussianDiffusion` (loss, sample, reconstruct,
denoising error) and checkpoints. Imports only the model below it."""

from .checkpoints import build_diffusion, load_checkpoint, load_diffusion
from .gaussian import GaussianDiffusion

__all__ = ["GaussianDiffusion", "build_diffusion", "load_checkpoint", "load_diffusion"]
