"""Coherent long runs: windows with the overlap held fixed, checked on a known Gaussian AR(1) process.

The exact denoisers below stand for a perfectly trained model of the process (joint, and
conditional on clean context frames), so the sampler machinery is tested against known answers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from modalmerge.diffusion.gaussian import GaussianDiffusion
from modalmerge.diffusion.schedulers import Scheduler, make_sampler
from modalmerge.diffusion.sequences import sample_sequences, window_starts

CLIP, RHO, N_VOLUMES, N_RUNS = 8, 0.6, 40, 1500
SCHEDULE = {"n_train_steps": 1000, "schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02,
            "prediction_type": "epsilon", "clip_sample": None}


class ExactAR1Denoiser(nn.Module):
    """E[eps | x_t] for clips of a unit-variance AR(1) process (coefficient ``rho``) at every voxel.

    Per-frame timesteps with leading zeros mark clean context frames: then the answer is the exact
    conditional one, E[eps | x_t of the other frames, the context frames]."""

    null_label = 1

    def __init__(self, scheduler: Scheduler, clip_length: int, rho: float):
        super().__init__()
        lags = np.abs(np.arange(clip_length)[:, None] - np.arange(clip_length)[None])
        self.cov = torch.tensor(rho ** lags, dtype=torch.float64)
        self.abar = scheduler.alphas_cumprod.double()

    def forward(self, x, t, labels):
        x = x.double()
        if t.ndim == 1:
            t = t[:, None].repeat(1, x.shape[1])
        k = int((t[0] == 0).sum()) if int(t[0, -1]) > 0 else 0  # leading clean frames
        abar = self.abar[t[0, -1]]
        unknown = slice(k, None)
        cov_uu = self.cov[unknown, unknown]
        mean = torch.zeros_like(x[:, unknown])
        if k:
            gain = self.cov[unknown, :k] @ torch.linalg.inv(self.cov[:k, :k])
            mean = torch.einsum("ij,bj...->bi...", gain, x[:, :k])
            cov_uu = cov_uu - gain @ self.cov[:k, unknown]
        eye = torch.eye(len(cov_uu), dtype=torch.float64)
        solve = (1 - abar).sqrt() * torch.linalg.inv(abar * cov_uu + (1 - abar) * eye)
        out = torch.zeros_like(x)
        out[:, unknown] = torch.einsum("ij,bj...->bi...", solve, x[:, unknown] - abar.sqrt() * mean)
        return out.float()


def sample_runs(overlap: int, context_prob: float, seed: int = 0) -> np.ndarray:
    scheduler = Scheduler(**SCHEDULE)
    diffusion = GaussianDiffusion(ExactAR1Denoiser(scheduler, CLIP, RHO), scheduler, torch.ones(1, 1, 1), 0.0,
                                  context_prob=context_prob)
    sampler = make_sampler("ddim", SCHEDULE, 50, 1.0)
    runs = sample_sequences(diffusion, sampler, np.zeros((N_RUNS, N_VOLUMES), int), CLIP, overlap, 1.0,
                            torch.Generator().manual_seed(seed), batch_size=N_RUNS)
    return runs[..., 0, 0, 0]


def lag1_at_boundaries_and_inside(runs: np.ndarray, overlap: int) -> tuple[float, float]:
    lag1 = np.array([np.corrcoef(runs[:, i], runs[:, i + 1])[0, 1] for i in range(runs.shape[1] - 1)])
    boundary = [start - 1 + overlap for start in window_starts(runs.shape[1], CLIP, overlap)[1:-1]]
    inside = [i for i in range(len(lag1)) if i not in boundary]
    return float(lag1[boundary].mean()), float(lag1[inside].mean())


@pytest.mark.parametrize("n, overlap", [(40, 0), (40, 2), (41, 3), (8, 5), (121, 2)])
def test_windows_cover_the_run_and_carry_over_the_overlap(n, overlap):
    starts = window_starts(n, CLIP, overlap)
    assert starts[0] == 0 and starts[-1] + CLIP == n
    assert all(later - earlier <= CLIP - overlap for earlier, later in zip(starts, starts[1:]))
    assert all(later > earlier for earlier, later in zip(starts, starts[1:]))


def test_windows_refuse_an_overlap_that_leaves_nothing_new():
    with pytest.raises(ValueError, match="overlap must be in 0..7"):
        window_starts(40, CLIP, 8)


def test_a_model_trained_to_continue_has_no_discontinuity_at_window_boundaries():
    """Context frames held fixed, exact conditional denoiser: the lag-1 correlation across a window
    boundary equals the one inside windows and the process's own (0.6); stitched clips have none."""
    stitched = lag1_at_boundaries_and_inside(sample_runs(overlap=0, context_prob=0.0), 0)
    coherent = lag1_at_boundaries_and_inside(sample_runs(overlap=2, context_prob=0.5), 2)
    assert abs(stitched[0]) < 0.08 and stitched[1] == pytest.approx(RHO, abs=0.05)
    assert coherent[0] == pytest.approx(RHO, abs=0.06) and coherent[1] == pytest.approx(RHO, abs=0.05)
    assert abs(coherent[0] - coherent[1]) < 0.06


def test_replacement_carries_part_of_the_correlation_for_a_model_without_context():
    """The documented limit of replacement sampling (why models learn context): better than stitching,
    short of the process."""
    boundary, inside = lag1_at_boundaries_and_inside(sample_runs(overlap=2, context_prob=0.0), 2)
    assert 0.2 < boundary < RHO - 0.1 and inside == pytest.approx(RHO, abs=0.05)


def test_context_frames_are_kept_exactly_and_left_out_of_the_loss():
    scheduler = Scheduler(**SCHEDULE)
    network = ExactAR1Denoiser(scheduler, CLIP, RHO)
    diffusion = GaussianDiffusion(network, scheduler, torch.ones(1, 1, 1), 0.0, context_prob=1.0)
    draws = diffusion.training_draws(64, (CLIP, 1, 1, 1), torch.Generator().manual_seed(0))
    assert draws.context.min() >= 1 and draws.context.max() <= CLIP - 1
    x0 = torch.randn(64, CLIP, 1, 1, 1)
    loss = diffusion.loss_per_clip(x0, torch.zeros(64, CLIP, dtype=torch.long), draws.t, draws.noise, draws.context)
    # changing the clean context's target noise changes nothing: those frames are not in the loss
    noise = draws.noise.clone()
    for i, k in enumerate(draws.context.tolist()):
        noise[i, :k] = 100.0
    loss_changed = diffusion.loss_per_clip(x0, torch.zeros(64, CLIP, dtype=torch.long), draws.t, noise, draws.context)
    assert torch.allclose(loss, loss_changed)
    # without context the draws are the old ones, number for number (checkpoints stay reproducible)
    plain = GaussianDiffusion(network, scheduler, torch.ones(1, 1, 1), 0.0)
    old = plain.training_draws(64, (CLIP, 1, 1, 1), torch.Generator().manual_seed(0))
    assert old.context is None and torch.equal(old.t, draws.t) and torch.equal(old.noise, draws.noise)
