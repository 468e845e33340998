"""Every detector on small data with planted anomalies and, for the diffusion detector, a known-answer
denoiser: clip AUROC well above chance, and voxel maps that peak inside the truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from modalmerge.analysis.anomaly_metrics import clip_metrics
from modalmerge.analysis.detectors import (DVARSDetector, IsolationForestDetector, MahalanobisDetector, PCADetector,
                                           RidgeWhitenedDetector, ZScoreDetector)
from modalmerge.analysis.diffusion_detector import DiffusionDetector, untrained_control
from modalmerge.config import validate_config
from modalmerge.diffusion.checkpoints import build_diffusion
from modalmerge.diffusion.gaussian import GaussianDiffusion
from modalmerge.diffusion.schedulers import Scheduler

GRID, T = (12, 10, 1), 4
N_TRAIN, N_TEST = 80, 40


def smooth_noise(rng, n):
    """Clips of spatially smooth unit-variance noise (a little like z-scored BOLD)."""
    raw = ndimage.gaussian_filter(rng.normal(size=(n, T, *GRID)), (0, 0, 1.0, 1.0, 0))
    return (raw / raw.std()).astype(np.float32)


@pytest.fixture(scope="module")
def planted():
    return make_planted()


def make_planted(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    train = smooth_noise(rng, N_TRAIN)
    normal, blob, spike = smooth_noise(rng, N_TEST), smooth_noise(rng, N_TEST), smooth_noise(rng, N_TEST)
    truth = np.zeros(blob.shape, bool)
    xx, yy = np.meshgrid(np.arange(GRID[0]), np.arange(GRID[1]), indexing="ij")
    for i in range(N_TEST):
        cx, cy = rng.integers(3, GRID[0] - 3), rng.integers(3, GRID[1] - 3)
        bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))[..., None]
        blob[i, 1:3] += 5.0 * bump
        truth[i, 1:3] = bump > 0.1
        spike[i, 2] += 1.5  # a global jump of one volume
    labels = np.r_[np.zeros(N_TEST), np.ones(N_TEST)].astype(int)
    return {"train": train, "normal": normal, "blob": blob, "spike": spike, "truth": truth, "labels": labels,
            "mask": np.ones(GRID, bool)}


def auroc(detector, planted, kind):
    clips = np.concatenate([planted["normal"], planted[kind]])
    return clip_metrics(detector.decision_function(clips), planted["labels"])["auroc"]


def peak_in_truth(maps, truth) -> float:
    """Share of anomalous clips whose map peaks (over frames and voxels) inside the truth mask."""
    flat = maps.reshape(len(maps), -1).argmax(1)
    return float(np.mean(truth.reshape(len(truth), -1)[np.arange(len(truth)), flat]))


class GaussianOracle(torch.nn.Module):
    """The exact E[eps | x_t] for unit-variance Gaussian data: sqrt(1 - abar_t) x_t (known answer)."""

    def __init__(self, scheduler: Scheduler):
        super().__init__()
        self.scheduler = scheduler
        self.null_label = 9

    def forward(self, x_t, t, labels):
        abar = self.scheduler.alphas_cumprod[t].float().reshape(-1, *[1] * (x_t.ndim - 1))
        return (1 - abar).sqrt() * x_t


def diffusion_detector(mask, **options):
    scheduler = Scheduler(1000)
    diffusion = GaussianDiffusion(GaussianOracle(scheduler), scheduler, torch.ones(GRID))
    return DiffusionDetector(mask, diffusion, **{"t_start": 200, "steps": 2, "n_draws": 2, **options})


# (name, detector factory, anomaly kind, AUROC floor, floor of the share of map peaks inside the
# truth or None). Measured over planted data seeds 0-3: AUROC 0.93-1.00 for every case (diffusion
# 0.927-0.956), peak shares 0.80-1.00 (PCA 0.80-0.90, diffusion 0.875-0.975); the floors sit below
# the lowest of those and far above chance (0.5).
CASES = [
    ("zscore_smoothed", lambda m: ZScoreDetector(m, 1.0), "blob", 0.85, 0.8),
    ("zscore_global_mean", lambda m: ZScoreDetector(m, 0.0, reduce="mean"), "spike", 0.85, None),
    ("pca", lambda m: PCADetector(m, 5), "blob", 0.85, 0.7),
    ("mahalanobis", lambda m: MahalanobisDetector(m), "blob", 0.85, None),
    ("isolation_forest", lambda m: IsolationForestDetector(m, 0), "spike", 0.85, None),
    ("dvars_spike", lambda m: DVARSDetector(m), "spike", 0.85, None),
    ("ridge_whitened_z", lambda m: RidgeWhitenedDetector(m, 16.0), "blob", 0.85, 0.8),
    ("diffusion_blob", diffusion_detector, "blob", 0.85, 0.8),
    ("diffusion_blob_mean_reconstruction", lambda m: diffusion_detector(m, average="reconstruction"), "blob", 0.85, 0.8),
]


@pytest.mark.parametrize("name,make,kind,floor,peak_floor", CASES, ids=[c[0] for c in CASES])
def test_detector_finds_planted_anomalies(planted, name, make, kind, floor, peak_floor):
    detector = make(planted["mask"]).fit(planted["train"])
    assert auroc(detector, planted, kind) > floor
    if peak_floor is not None:
        maps = detector.score_maps(planted[kind])
        assert maps.shape == planted[kind].shape
        assert peak_in_truth(maps, planted["truth"]) >= peak_floor


@pytest.mark.parametrize("name,make,kind,floor,peak_floor", CASES, ids=[c[0] for c in CASES])
def test_detector_is_at_chance_on_clean_clips_labelled_anomalous(planted, name, make, kind, floor, peak_floor):
    """The control: two sets of clean clips cannot be told apart (so the floors above mean something).
    With 40 clips a side, AUROC's standard error under the null is sqrt(81 / (12 * 40 * 40)) = 0.065;
    0.2 is three of them (measured 0.41-0.62 over seeds 0-3)."""
    detector = make(planted["mask"]).fit(planted["train"])
    clips = np.concatenate([planted["normal"], smooth_noise(np.random.default_rng(7), N_TEST)])
    assert abs(clip_metrics(detector.decision_function(clips), planted["labels"])["auroc"] - 0.5) < 0.2


def with_shared_fluctuation(rng, n):
    """Smooth noise plus a global offset per volume (sd 2): normal variation most of it shared by all voxels."""
    return (smooth_noise(rng, n) + 2.0 * rng.normal(size=(n, T, 1, 1, 1))).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_whitening_finds_a_blob_that_shared_fluctuations_hide(seed):
    """A focal blob (peak 4) under a global fluctuation (sd 2) that a voxelwise z-score cannot tell from
    it. Measured over seeds 0-5: ridge-whitened AUROC 0.91-0.97 at lambda 0.1-16; the smoothed z-score
    0.50-0.66, and the same detector with the whitening ridged away (lambda 1e6) 0.52-0.68."""
    rng = np.random.default_rng(100 + seed)
    train, normal, blob = (with_shared_fluctuation(rng, n) for n in (N_TRAIN, N_TEST, N_TEST))
    xx, yy = np.meshgrid(np.arange(GRID[0]), np.arange(GRID[1]), indexing="ij")
    for i in range(N_TEST):
        cx, cy = rng.integers(3, GRID[0] - 3), rng.integers(3, GRID[1] - 3)
        blob[i, 1:3] += 4.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))[..., None]
    data = {"normal": normal, "blob": blob, "labels": np.r_[np.zeros(N_TEST), np.ones(N_TEST)].astype(int)}
    mask = np.ones(GRID, bool)
    whitened = auroc(RidgeWhitenedDetector(mask, 16.0).fit(train), data, "blob")
    assert whitened > 0.85
    assert whitened > auroc(ZScoreDetector(mask, 1.0).fit(train), data, "blob") + 0.15
    assert whitened > auroc(RidgeWhitenedDetector(mask, 1e6).fit(train), data, "blob") + 0.15


def test_a_negative_ridge_is_refused(planted):
    with pytest.raises(ValueError, match="ridge_whitened_lambda"):
        RidgeWhitenedDetector(planted["mask"], -1.0).fit(planted["train"])


def test_diffusion_maps_passed_in_give_the_same_scores(planted):
    detector = diffusion_detector(planted["mask"]).fit(planted["train"])
    maps = detector.score_maps(planted["blob"])
    assert np.array_equal(detector.decision_function(planted["blob"], maps=maps), detector.decision_function(planted["blob"]))


def test_diffusion_reconstruction_of_gaussian_data_is_the_posterior_shrinkage():
    """One DDIM step from t to 0 with the oracle gives E[x0 | x_t] = sqrt(abar) x_t exactly."""
    scheduler = Scheduler(1000, clip_sample=None)
    diffusion = GaussianDiffusion(GaussianOracle(scheduler), scheduler, torch.ones(GRID))
    x0, noise = torch.randn(3, T, *GRID), torch.randn(3, T, *GRID)
    t = 300
    abar = scheduler.alphas_cumprod[t].item()
    x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise
    assert torch.allclose(diffusion.reconstruct(x0, torch.zeros(3, T, dtype=torch.long), t, 1, noise),
                          math.sqrt(abar) * x_t, atol=1e-5)


def test_averaging_reconstructions_squares_the_mean_of_the_draws():
    """average='reconstruction' is (mean over draws of x_hat - x0)^2; the default is the mean of the
    squares. Same draws (same seed), so Jensen orders them voxel by voxel, and each matches the
    reconstructions computed here from the same generator."""
    mask = np.ones(GRID, bool)
    clips = np.random.default_rng(0).standard_normal((5, T, *GRID)).astype(np.float32)
    squares = diffusion_detector(mask, n_draws=3).residuals(clips)
    of_mean = diffusion_detector(mask, n_draws=3, average="reconstruction").residuals(clips)
    detector = diffusion_detector(mask, n_draws=3)
    generator = torch.Generator().manual_seed(detector.seed)
    x0 = torch.as_tensor(clips)
    draws = [detector.diffusion.reconstruct(x0, torch.zeros(5, T, dtype=torch.long), 200, 2,
                                            torch.randn(x0.shape, generator=generator)) - x0 for _ in range(3)]
    assert np.allclose(squares, torch.stack(draws).pow(2).mean(0).numpy(), atol=1e-5)
    assert np.allclose(of_mean, torch.stack(draws).mean(0).pow(2).numpy(), atol=1e-5)
    assert np.all(of_mean <= squares + 1e-6) and of_mean.mean() < 0.9 * squares.mean()


def test_an_unknown_average_is_refused():
    with pytest.raises(ValueError, match="average is 'median'"):
        diffusion_detector(np.ones(GRID, bool), average="median")


@pytest.mark.parametrize("gaussian_baseline", [False, True])
def test_the_untrained_control_is_the_model_before_training(gaussian_baseline):
    """untrained_control(diffusion) reconstructs exactly as a freshly built model of the same config
    (whose zero-initialised output convolution predicts 0: the plain network's output is 0, the baseline
    model's is its Gaussian's), at no network cost, and keeps the schedule."""
    config = validate_config({"model": {"clip_length": T, "channels": [8, 16], "attention_levels": [1],
                                        "temporal_head_dim": 8, "temporal_heads": 2, "gaussian_baseline": gaussian_baseline}})
    torch.manual_seed(0)
    fresh = build_diffusion(config["model"], config["diffusion"], GRID, 8, np.ones(GRID, bool)).eval()
    control = untrained_control(fresh)
    assert control.scheduler is fresh.scheduler and torch.equal(control.mask, fresh.mask)
    x0, noise = torch.randn(3, T, *GRID), torch.randn(3, T, *GRID)
    labels = torch.randint(0, 8, (3, T))
    output = fresh.network(x0, torch.full((3,), 100), labels)
    assert output.any() if gaussian_baseline else not output.any()
    assert torch.equal(control.reconstruct(x0, labels, 200, 2, noise), fresh.reconstruct(x0, labels, 200, 2, noise))
    clips = x0.numpy()
    mask = np.ones(GRID, bool)
    maps = [DiffusionDetector(mask, d).fit(clips).score_maps(clips) for d in (fresh, control)]
    assert np.array_equal(maps[0], maps[1])


def test_the_untrained_control_is_not_the_trained_model():
    """With a model that knows the data (the Gaussian oracle), the control reconstructs differently: it is
    not the model under another name."""
    scheduler = Scheduler(1000)
    oracle = GaussianDiffusion(GaussianOracle(scheduler), scheduler, torch.ones(GRID))
    control = untrained_control(oracle)
    x0, noise = torch.randn(3, T, *GRID), torch.randn(3, T, *GRID)
    labels = torch.zeros(3, T, dtype=torch.long)
    assert not torch.allclose(control.reconstruct(x0, labels, 200, 2, noise), oracle.reconstruct(x0, labels, 200, 2, noise), atol=1e-3)


class RepeatedFrameOracle(GaussianOracle):
    """The exact E[eps | x_t] for clips whose frames are one unit-variance Gaussian volume repeated:
    the posterior mean of the volume pools every frame of x_t (known answer for temporal inpainting)."""

    def forward(self, x_t, t, labels):
        abar = self.scheduler.alphas_cumprod[t].float().reshape(-1, *[1] * (x_t.ndim - 1))
        volume = abar.sqrt() * x_t.sum(1, keepdim=True) / (abar * x_t.shape[1] + 1 - abar)
        return (x_t - abar.sqrt() * volume) / (1 - abar).sqrt()


def test_inpainting_fills_frames_from_their_neighbours_only():
    """Frames marked unknown are inferred from the known ones: with the oracle of repeated-frame clips
    they come back close to the volume the known frames show; with an oracle of independent frames
    they carry nothing of it; and changing the unknown frames' content changes nothing."""
    scheduler = Scheduler(1000, clip_sample=None)
    rng = torch.Generator().manual_seed(0)
    volume = torch.randn(6, 1, *GRID, generator=rng)
    x0, noise = volume.repeat(1, T, 1, 1, 1), torch.randn(6, T, *GRID, generator=rng)
    known, labels = torch.tensor([True, False, True, False]), torch.zeros(6, T, dtype=torch.long)
    repeated = GaussianDiffusion(RepeatedFrameOracle(scheduler), scheduler, torch.ones(GRID))
    independent = GaussianDiffusion(GaussianOracle(scheduler), scheduler, torch.ones(GRID))
    filled = repeated.inpaint_frames(x0, labels, known, 999, 20, noise)
    assert torch.equal(filled[:, known], x0[:, known])
    corr = lambda a, b: float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])  # noqa: E731
    assert corr(filled[:, ~known], x0[:, ~known]) > 0.9
    assert abs(corr(independent.inpaint_frames(x0, labels, known, 999, 20, noise)[:, ~known], x0[:, ~known])) < 0.1
    changed = x0.clone()
    changed[:, ~known] = torch.randn(changed[:, ~known].shape, generator=rng) * 5
    assert torch.equal(repeated.inpaint_frames(changed, labels, known, 999, 20, noise)[:, ~known], filled[:, ~known])
    with pytest.raises(ValueError, match="one flag per frame"):
        repeated.inpaint_frames(x0, labels, known[:3], 999, 2, noise)
