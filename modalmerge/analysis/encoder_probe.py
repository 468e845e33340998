"""Decoding with the denoiser's features: a linear probe of its bottleneck (what the network
represents of the categories, beside the generative classifier of :mod:`.diffusion_decoding`)."""

from __future__ import annotations

import numpy as np
import torch

from ..data.clips import covering_clips
from .decoding import heldout_split_decoding
from .ridge import StandardRidgeClassifierCV


def encoder_features(diffusion, X: np.ndarray, runs: np.ndarray, clip_length: int, t: int = 50,
                     batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """Bottleneck features of the trained denoiser for every volume: ``(n, features)``.

    Volumes are fed as consecutive clips of their run, lightly noised (timestep ``t``), with the
    null label (the decoder must not see the category); features are the bottleneck activations
    after the temporal and cross-modal attention.
    """
    network = diffusion.network
    device = diffusion.mask.device
    generator = torch.Generator().manual_seed(seed)
    features = [None] * len(X)
    for run in np.unique(runs):
        clip_index, keep = covering_clips(np.flatnonzero(runs == run), clip_length)
        for s in range(0, len(clip_index), batch_size):
            batch_index = clip_index[s:s + batch_size]
            x0 = torch.as_tensor(X[batch_index], device=device)
            noise = torch.randn(x0.shape, generator=generator).to(device)
            tt = torch.full((len(x0),), t, device=device, dtype=torch.long)
            x_t = diffusion.scheduler.add_noise(x0, noise, tt)
            null = torch.full(x0.shape[:2], network.null_label, device=device, dtype=torch.long)
            h = network.bottleneck_features(x_t, tt, null).cpu().numpy()  # (B, T, C * positions)
            for clip, frames, kept in zip(h, batch_index, keep[s:s + batch_size]):
                for f, i in zip(clip[kept], frames[kept]):
                    features[i] = f
    return np.stack(features)


def encoder_probe_decoding(diffusion, X_volumes, runs_all, is_category, y, runs, train_runs, test_runs, categories,
                           clip_length: int, n_permutations: int, seed: int, n_jobs: int = 1) -> dict:
    """A linear probe of the denoiser's bottleneck features, scored like the classical decoders."""
    features = encoder_features(diffusion, X_volumes, runs_all, clip_length, seed=seed)[is_category]
    # ridge: closed form (a LinearSVC probe took over 10 minutes to converge on shuffled labels);
    # alpha chosen by efficient leave-one-out inside the training runs of each fit, never on
    # held-out data; the permutation null solves every shuffled label set with one factorisation
    probe = StandardRidgeClassifierCV(alphas=tuple(np.logspace(1, 5, 9)))
    return heldout_split_decoding(probe, features, y, runs, train_runs, test_runs, categories, n_permutations, seed, n_jobs)
