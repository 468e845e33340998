"""Synthetic runs of any length, generated coherently: overlapping clips with the overlap held fixed.

A model trained on clips of ``T`` volumes samples a run of ``N`` volumes window by window. The first
window is sampled freely; every later window starts ``T - overlap`` volumes on, so its first
``overlap`` (or more, for the last window) volumes are already generated. Those frames are held
fixed in one of two ways:

* a model trained to continue clips (``diffusion.context_prob`` > 0) gets them clean, at timestep
  0, as it saw context frames in training (per-frame noise levels);
* any other model: by replacement (Ho et al. 2022, "Video diffusion models"; RePaint): after every
  reverse step the known frames are set to a fresh forward-noised copy of their clean values at
  the noise level the sample has now. On a known Gaussian AR(1) process with its exact denoiser,
  replacement carries only part of the correlation across a window boundary (lag-1 0.34 where
  the process has 0.60; tests/test_sequences.py): the model trained with context is the remedy.

With ``overlap`` 0 the windows are independent (stitched clips).
"""

from __future__ import annotations

import numpy as np
import torch

from .gaussian import GaussianDiffusion
from .schedulers import Scheduler


def window_starts(n_volumes: int, clip_length: int, overlap: int) -> list[int]:
    """First volume of every window that covers ``n_volumes`` with ``overlap`` frames carried over;
    the last window is shifted back to end at the run's end (it then carries over more)."""
    if not 0 <= overlap < clip_length:
        raise ValueError(f"overlap must be in 0..{clip_length - 1} (clip_length {clip_length}); got {overlap}.")
    if n_volumes < clip_length:
        raise ValueError(f"a sequence of {n_volumes} volumes is shorter than the clip length {clip_length}.")
    stride = clip_length - overlap
    starts = list(range(0, n_volumes - clip_length + 1, stride))
    if starts[-1] + clip_length < n_volumes:
        starts.append(n_volumes - clip_length)
    return starts


@torch.no_grad()
def sample_with_known_frames(diffusion: GaussianDiffusion, sampler: Scheduler, labels: torch.Tensor,
                             known: torch.Tensor, guidance_scale: float = 1.0,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample clips ``(B, T, x, y, z)`` whose first ``K = known.shape[1]`` frames are the clean
    volumes ``known`` ``(B, K, x, y, z)``, held fixed by replacement at every noise level."""
    shape = (labels.shape[0], labels.shape[1], *diffusion.mask.shape)
    if diffusion.context_prob > 0:
        x = torch.randn(shape, generator=generator, device=diffusion.mask.device)
        return diffusion._reverse(x, sampler, labels, guidance_scale, generator, known=known) * diffusion.mask
    n_known = known.shape[1]
    timesteps = sampler.timesteps.tolist()
    abar = diffusion.alphas_cumprod

    def noised(t: int) -> torch.Tensor:
        noise = torch.randn(known.shape, generator=generator, device=known.device)
        return abar[t].sqrt() * known + (1 - abar[t]).sqrt() * noise

    def hold(i: int, x: torch.Tensor) -> None:
        # x is now at the next timestep's noise level (clean after the last step)
        x[:, :n_known] = noised(timesteps[i + 1]) if i + 1 < len(timesteps) else known

    x = torch.randn(shape, generator=generator, device=diffusion.mask.device)
    x[:, :n_known] = noised(timesteps[0])
    x = diffusion._reverse(x, sampler, labels, guidance_scale, generator, hold)
    return x * diffusion.mask


@torch.no_grad()
def sample_sequences(diffusion: GaussianDiffusion, sampler: Scheduler, labels: np.ndarray, clip_length: int,
                     overlap: int, guidance_scale: float = 1.0, generator: torch.Generator | None = None,
                     batch_size: int = 16) -> np.ndarray:
    """Synthetic runs for the label sequences ``labels`` ``(R, N)``: ``(R, N, x, y, z)``.

    The R runs advance window by window together (in batches of ``batch_size`` runs); each window
    holds the frames already generated fixed (``overlap`` > 0) or is independent (``overlap`` 0).
    """
    labels = np.asarray(labels)
    n_runs, n_volumes = labels.shape
    device = diffusion.mask.device
    out = np.zeros((n_runs, n_volumes, *diffusion.mask.shape), np.float32)
    starts = window_starts(n_volumes, clip_length, overlap)
    for first in range(0, n_runs, batch_size):
        runs = slice(first, first + batch_size)
        done = 0  # volumes generated so far (the same in every run of the batch)
        for start in starts:
            window_labels = torch.as_tensor(labels[runs, start:start + clip_length], dtype=torch.long, device=device)
            n_known = done - start if overlap else 0
            if n_known > 0:
                known = torch.as_tensor(out[runs, start:done], device=device)
                clips = sample_with_known_frames(diffusion, sampler, window_labels, known, guidance_scale, generator)
            else:
                clips, _ = diffusion.sample(sampler, window_labels, guidance_scale, generator)
            out[runs, done:start + clip_length] = clips[:, done - start:].cpu().numpy()
            done = start + clip_length
    return out
