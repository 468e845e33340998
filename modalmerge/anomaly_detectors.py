"""score-AUC detectors: the diffusion detector and the classical baselines, sklearn-style.

Each detector is fitted on clips of the *training* runs only (its notion of normal) and returns,
for clips ``(n, T, x, y, z)``, a clip score ``(n,)`` and, where it has one, a voxel map of the
clip's shape. Thresholds for voxel-level Dice come from clean held-out clips, never from labels.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted


def smooth(maps: np.ndarray, mask: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gaussian smoothing over the spatial axes only (singleton axes untouched): a matched filter for blobs."""
    sigmas = [0, 0] + [sigma if n > 1 else 0 for n in mask.shape]
    return ndimage.gaussian_filter(maps, sigmas) * mask


def frame_max(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Clip score: the largest voxel value of any frame."""
    return maps[:, :, mask].max(axis=(1, 2))


class _ClipDetector(BaseEstimator):
    """Shared pieces: ``fit`` stores the mask; subclasses implement ``_fit`` and ``score``."""

    def fit(self, clips: np.ndarray, mask: np.ndarray):
        self.mask_ = mask.astype(bool)
        self._fit(clips)
        return self

    def _fit(self, clips):
        pass


class ZScoreDetector(_ClipDetector):
    """Voxelwise |z| against the training runs' voxel mean and std (``smoothing`` sigma in voxels, 0 = none).

    ``reduce="max"`` scores a clip by its largest voxel (focal anomalies); ``"mean"`` by the largest
    |mean z| of a frame (global anomalies such as a spike, invisible voxel by voxel at 0.5 std).
    """

    def __init__(self, smoothing: float = 0.0, reduce: str = "max"):
        self.smoothing = smoothing
        self.reduce = reduce

    def _fit(self, clips):
        volumes = clips.reshape(-1, *clips.shape[2:])
        self.mean_, self.std_ = volumes.mean(0), np.maximum(volumes.std(0), 1e-6)

    def score(self, clips):
        check_is_fitted(self, "mean_")
        z = (clips - self.mean_) / self.std_ * self.mask_
        if self.reduce == "mean":
            return np.abs(z[:, :, self.mask_].mean(axis=2)).max(axis=1), np.abs(z)
        maps = np.abs(z)
        if self.smoothing:
            maps = smooth(maps, self.mask_, self.smoothing)
        return frame_max(maps, self.mask_), maps


class VarianceDeficitDetector(_ClipDetector):
    """Missing variance: smoothed (expected x^2 - observed x^2) over the clip; catches dropout."""

    def __init__(self, smoothing: float = 1.5):
        self.smoothing = smoothing

    def _fit(self, clips):
        self.expected_ = (clips ** 2).mean(axis=(0, 1))

    def score(self, clips):
        check_is_fitted(self, "expected_")
        deficit = np.clip(self.expected_ - clips ** 2, 0, None) * self.mask_
        maps = smooth(deficit, self.mask_, self.smoothing)
        # averaged over frames: dropout removes variance for several volumes in a row
        per_voxel = maps.mean(axis=1)
        return per_voxel[:, self.mask_].max(axis=1), maps


class PCADetector(_ClipDetector):
    """Reconstruction error of each volume by a PCA of the training volumes."""

    def __init__(self, n_components: int = 20):
        self.n_components = n_components

    def _fit(self, clips):
        volumes = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        self.pca_ = PCA(self.n_components, random_state=0).fit(volumes)

    def score(self, clips):
        check_is_fitted(self, "pca_")
        flat = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        residual = flat - self.pca_.inverse_transform(self.pca_.transform(flat))
        maps = np.zeros(clips.shape, np.float32)
        maps.reshape(-1, *clips.shape[2:])[:, self.mask_] = np.abs(residual)
        per_frame = np.sqrt((residual ** 2).mean(1)).reshape(clips.shape[:2])
        return per_frame.max(axis=1), maps


class MahalanobisDetector(_ClipDetector):
    """Mahalanobis distance of each volume under a Ledoit-Wolf shrinkage covariance of training volumes."""

    def _fit(self, clips):
        volumes = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        self.covariance_ = LedoitWolf().fit(volumes)

    def score(self, clips):
        check_is_fitted(self, "covariance_")
        flat = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        return np.sqrt(self.covariance_.mahalanobis(flat)).reshape(clips.shape[:2]).max(axis=1), None


def clip_features(clips: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per clip: mean, std, max |x|, mean |x| of each frame, and DVARS between frames (sorted)."""
    values = clips[:, :, mask]
    per_frame = np.stack([values.mean(2), values.std(2), np.abs(values).max(2), np.abs(values).mean(2)], axis=2)
    dvars = np.sqrt((np.diff(values, axis=1) ** 2).mean(2))
    return np.concatenate([np.sort(per_frame, axis=1).reshape(len(clips), -1), np.sort(dvars, axis=1)], axis=1)


class IsolationForestDetector(_ClipDetector):
    """IsolationForest on clip-level summary features (no voxel map)."""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def _fit(self, clips):
        self.forest_ = IsolationForest(n_estimators=300, random_state=self.seed).fit(clip_features(clips, self.mask_))

    def score(self, clips):
        check_is_fitted(self, "forest_")
        return -self.forest_.score_samples(clip_features(clips, self.mask_)), None


class DVARSDetector(_ClipDetector):
    """DVARS-style score: RMS of the temporal derivative between consecutive volumes (max over the clip)."""

    def _fit(self, clips):
        self.reference_ = float(np.sqrt((np.diff(clips[:, :, self.mask_], axis=1) ** 2).mean()))

    def score(self, clips):
        check_is_fitted(self, "reference_")
        derivative = np.abs(np.diff(clips, axis=1))
        maps = np.concatenate([derivative[:, :1], derivative], axis=1) * self.mask_
        dvars = np.sqrt((derivative[:, :, self.mask_] ** 2).mean(2)) / self.reference_
        return dvars.max(axis=1), maps


class DiffusionDetector(_ClipDetector):
    """Partially noise each clip to ``t_start``, denoise it with the trained model (DDIM, ``steps``),
    and score the residual, averaged over ``n_draws`` noise draws.

    The residual is standardised voxelwise by its mean and std on clips of the training runs
    (calibration, no labels), so the model's ordinary error is not mistaken for an anomaly; the
    voxel map is then smoothed like the z-score matched filter. Conditioning uses the known
    design labels of each clip (the experiment's timing is known, anomalies are not).
    """

    def __init__(self, diffusion=None, t_start: int = 200, steps: int = 2, n_draws: int = 2, smoothing: float = 1.0,
                 batch_size: int = 32, seed: int = 0):
        self.diffusion = diffusion
        self.t_start = t_start
        self.steps = steps
        self.n_draws = n_draws
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.seed = seed

    @torch.no_grad()
    def residuals(self, clips: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Mean squared residual of the reconstruction over ``n_draws``: same shape as ``clips``."""
        from .schedulers import ddim_from
        diffusion = self.diffusion
        scheduler = diffusion.scheduler
        stride = max(self.t_start // self.steps, 1)
        timesteps = [self.t_start - i * stride for i in range(self.steps)]
        sampler = ddim_from(scheduler, timesteps)
        device = diffusion.mask.device
        generator = torch.Generator().manual_seed(self.seed)
        out = np.zeros(clips.shape, np.float32)
        for draw in range(self.n_draws):
            for s in range(0, len(clips), self.batch_size):
                x0 = torch.as_tensor(clips[s:s + self.batch_size], device=device)
                y = torch.as_tensor(labels[s:s + self.batch_size], dtype=torch.long, device=device)
                noise = torch.randn(x0.shape, generator=generator).to(device)
                t0 = torch.full((len(x0),), self.t_start, device=device, dtype=torch.long)
                x = scheduler.add_noise(x0, noise, t0)
                for t in timesteps:
                    output = diffusion.network(x, torch.full((len(x0),), t, device=device, dtype=torch.long), y)
                    x, _ = sampler.step(output.float(), t, x)
                out[s:s + self.batch_size] += ((x - x0) ** 2 * diffusion.mask).cpu().numpy() / self.n_draws
        return out

    def fit(self, clips: np.ndarray, mask: np.ndarray, labels: np.ndarray | None = None):
        self.mask_ = mask.astype(bool)
        labels = np.zeros(clips.shape[:2], int) if labels is None else labels
        residual = self.residuals(clips, labels)
        self.mean_ = residual.mean(axis=(0, 1))
        self.std_ = np.maximum(residual.std(axis=(0, 1)), 1e-6)
        return self

    def score(self, clips, labels: np.ndarray | None = None):
        check_is_fitted(self, "mean_")
        labels = np.zeros(clips.shape[:2], int) if labels is None else labels
        standardised = (self.residuals(clips, labels) - self.mean_) / self.std_ * self.mask_
        maps = smooth(standardised, self.mask_, self.smoothing) if self.smoothing else standardised
        return frame_max(maps, self.mask_), maps
