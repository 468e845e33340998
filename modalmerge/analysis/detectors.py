"""score-AUC detectors, sklearn-style: the classical baselines (the diffusion detector is in
:mod:`.diffusion_detector`).

Each detector takes the brain ``mask`` ``(x, y, z)`` as a parameter, is fitted on clips of the
*training* runs only (its notion of normal), and gives for clips ``(n, T, x, y, z)`` one clip
score each (``decision_function``, higher = more anomalous) and, where it has one, a voxel map of
the clips' shape (``score_maps``; None otherwise). Thresholds for voxel-level Dice come from clean
held-out clips, never from labels.
"""

from __future__ import annotations

import numpy as np
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


class ClipDetector(BaseEstimator):
    """Shared pieces: ``fit`` stores the mask and calls ``_fit``; subclasses implement ``_maps``
    (or leave it None) and ``_clip_scores``. ``design`` (n, T) labels are accepted everywhere and
    used by detectors that condition on the experiment's design."""

    has_maps = True

    def __init__(self, mask=None):
        self.mask = mask

    def fit(self, clips: np.ndarray, design: np.ndarray | None = None):
        if self.mask is None:
            raise ValueError(f"{type(self).__name__} needs the brain mask: pass mask=(x, y, z) booleans.")
        self.mask_ = np.asarray(self.mask, bool)
        self._fit(clips, design)
        self.fitted_ = True
        return self

    def _fit(self, clips, design):
        pass

    def score_maps(self, clips: np.ndarray, design: np.ndarray | None = None) -> np.ndarray | None:
        """Voxel maps of the clips' shape ``(n, T, x, y, z)``, or None for a clip-level detector."""
        check_is_fitted(self, "fitted_")
        return self._maps(clips, design) if self.has_maps else None

    def decision_function(self, clips: np.ndarray, design: np.ndarray | None = None,
                          maps: np.ndarray | None = None) -> np.ndarray:
        """Clip scores ``(n,)``; ``maps`` from :meth:`score_maps` of the same clips saves recomputing them."""
        check_is_fitted(self, "fitted_")
        if maps is None and self.has_maps:
            maps = self._maps(clips, design)
        return self._clip_scores(clips, maps)

    def _maps(self, clips, design):
        raise NotImplementedError

    def _clip_scores(self, clips, maps):
        raise NotImplementedError


class ZScoreDetector(ClipDetector):
    """Voxelwise |z| against the training runs' voxel mean and std (``smoothing`` sigma in voxels, 0 = none).

    ``reduce="max"`` scores a clip by its largest voxel (focal anomalies); ``"mean"`` by the largest
    |mean z| of a frame (global anomalies such as a spike, invisible voxel by voxel at 0.5 std).
    """

    def __init__(self, mask=None, smoothing: float = 0.0, reduce: str = "max"):
        super().__init__(mask)
        self.smoothing = smoothing
        self.reduce = reduce

    def _fit(self, clips, design):
        if self.reduce not in ("max", "mean"):
            raise ValueError(f"reduce must be 'max' or 'mean'; got {self.reduce!r}.")
        volumes = clips.reshape(-1, *clips.shape[2:])
        self.mean_, self.std_ = volumes.mean(0), np.maximum(volumes.std(0), 1e-6)

    def _z(self, clips):
        return (clips - self.mean_) / self.std_ * self.mask_

    def _maps(self, clips, design):
        maps = np.abs(self._z(clips))
        if self.smoothing and self.reduce == "max":
            maps = smooth(maps, self.mask_, self.smoothing)
        return maps

    def _clip_scores(self, clips, maps):
        if self.reduce == "mean":
            return np.abs(self._z(clips)[:, :, self.mask_].mean(axis=2)).max(axis=1)
        return frame_max(maps, self.mask_)


class VarianceDeficitDetector(ClipDetector):
    """Missing variance: smoothed (expected x^2 - observed x^2) over the clip; catches dropout."""

    def __init__(self, mask=None, smoothing: float = 1.5):
        super().__init__(mask)
        self.smoothing = smoothing

    def _fit(self, clips, design):
        self.expected_ = (clips ** 2).mean(axis=(0, 1))

    def _maps(self, clips, design):
        deficit = np.clip(self.expected_ - clips ** 2, 0, None) * self.mask_
        return smooth(deficit, self.mask_, self.smoothing)

    def _clip_scores(self, clips, maps):
        # averaged over frames: dropout removes variance for several volumes in a row
        return maps.mean(axis=1)[:, self.mask_].max(axis=1)


class PCADetector(ClipDetector):
    """Reconstruction error of each volume by a PCA of the training volumes."""

    def __init__(self, mask=None, n_components: int = 20):
        super().__init__(mask)
        self.n_components = n_components

    def _fit(self, clips, design):
        volumes = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        self.pca_ = PCA(self.n_components, random_state=0).fit(volumes)

    def _maps(self, clips, design):
        flat = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        residual = flat - self.pca_.inverse_transform(self.pca_.transform(flat))
        maps = np.zeros(clips.shape, np.float32)
        maps.reshape(-1, *clips.shape[2:])[:, self.mask_] = np.abs(residual)
        return maps

    def _clip_scores(self, clips, maps):
        residual = maps.reshape(-1, *clips.shape[2:])[:, self.mask_]
        return np.sqrt((residual ** 2).mean(1)).reshape(clips.shape[:2]).max(axis=1)


class MahalanobisDetector(ClipDetector):
    """Mahalanobis distance of each volume under a Ledoit-Wolf shrinkage covariance of training volumes."""

    has_maps = False

    def _fit(self, clips, design):
        volumes = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        self.covariance_ = LedoitWolf().fit(volumes)

    def _clip_scores(self, clips, maps):
        flat = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        return np.sqrt(self.covariance_.mahalanobis(flat)).reshape(clips.shape[:2]).max(axis=1)


def clip_features(clips: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per clip: mean, std, max |x|, mean |x| of each frame, and DVARS between frames (sorted)."""
    values = clips[:, :, mask]
    per_frame = np.stack([values.mean(2), values.std(2), np.abs(values).max(2), np.abs(values).mean(2)], axis=2)
    dvars = np.sqrt((np.diff(values, axis=1) ** 2).mean(2))
    return np.concatenate([np.sort(per_frame, axis=1).reshape(len(clips), -1), np.sort(dvars, axis=1)], axis=1)


class IsolationForestDetector(ClipDetector):
    """IsolationForest on clip-level summary features (no voxel map)."""

    has_maps = False

    def __init__(self, mask=None, seed: int = 0):
        super().__init__(mask)
        self.seed = seed

    def _fit(self, clips, design):
        self.forest_ = IsolationForest(n_estimators=300, random_state=self.seed).fit(clip_features(clips, self.mask_))

    def _clip_scores(self, clips, maps):
        return -self.forest_.score_samples(clip_features(clips, self.mask_))


class DVARSDetector(ClipDetector):
    """DVARS-style score: RMS of the temporal derivative between consecutive volumes (max over the clip)."""

    def _fit(self, clips, design):
        self.reference_ = float(np.sqrt((np.diff(clips[:, :, self.mask_], axis=1) ** 2).mean()))

    def _maps(self, clips, design):
        derivative = np.abs(np.diff(clips, axis=1))
        return np.concatenate([derivative[:, :1], derivative], axis=1) * self.mask_

    def _clip_scores(self, clips, maps):
        derivative = np.abs(np.diff(clips, axis=1))
        return (np.sqrt((derivative[:, :, self.mask_] ** 2).mean(2)) / self.reference_).max(axis=1)


class RidgeWhitenedDetector(ClipDetector):
    """Each volume's deviation from the training mean, whitened by (Ledoit-Wolf covariance of the
    training volumes + ``ridge`` I)^(-1/2), squared, standardised voxelwise on the training clips,
    smoothed (``smoothing`` sigma in voxels); the clip's largest voxel.

    Whitening takes out the spatially correlated part of normal variation, so a focal anomaly stands
    out against the noise it does not share; the ridge keeps the smallest eigenvalues of the
    covariance from turning estimation noise into false alarms (``ridge`` 0: plain ZCA). On the
    development split (bench/README.md 28) it is the strongest classical detector pooled and on blobs.
    """

    def __init__(self, mask=None, ridge: float = 16.0, smoothing: float = 1.0):
        super().__init__(mask)
        self.ridge, self.smoothing = ridge, smoothing

    def _squared(self, clips):
        out = np.zeros(clips.shape, np.float32)
        out[:, :, self.mask_] = ((clips[:, :, self.mask_] - self.mean_) @ self.whitener_) ** 2
        return out

    def _fit(self, clips, design):
        if not self.ridge >= 0:
            raise ValueError(f"ridge must be >= 0 (anomalies.ridge_whitened_lambda); got {self.ridge!r}.")
        volumes = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        self.mean_ = volumes.mean(0)
        self.whitener_ = self._whitener(volumes - self.mean_)
        squared = self._squared(clips)
        self.s_mean_ = squared.mean(axis=(0, 1))
        self.s_std_ = np.maximum(squared.std(axis=(0, 1)), 1e-6)

    def _whitener(self, centred):
        return zca(centred, self.ridge)

    def _maps(self, clips, design):
        standardised = (self._squared(clips) - self.s_mean_) / self.s_std_ * self.mask_
        return smooth(standardised, self.mask_, self.smoothing) if self.smoothing else standardised

    def _clip_scores(self, clips, maps):
        return frame_max(maps, self.mask_)


def zca(vectors: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """The symmetric inverse square root of the Ledoit-Wolf covariance of ``vectors`` (n, V), plus
    ``ridge`` times the identity."""
    values, basis = np.linalg.eigh(LedoitWolf().fit(vectors).covariance_)
    return ((basis * (values + ridge) ** -0.5) @ basis.T).astype(np.float32)


def classical_detectors(mask: np.ndarray, seed: int = 0, ridge: float = 16.0) -> dict:
    """The classical detectors the diffusion detector is compared with, by name (``ridge``: the
    ridge-whitened z-score's lambda, ``anomalies.ridge_whitened_lambda``)."""
    return {
        "zscore_max": ZScoreDetector(mask, 0.0),
        "zscore_smoothed": ZScoreDetector(mask, 1.0),
        "zscore_global_mean": ZScoreDetector(mask, 0.0, reduce="mean"),
        "pca_reconstruction": PCADetector(mask, 20),
        "mahalanobis_ledoit_wolf": MahalanobisDetector(mask),
        "isolation_forest": IsolationForestDetector(mask, seed),
        "dvars": DVARSDetector(mask),
        "variance_deficit": VarianceDeficitDetector(mask),
        "ridge_whitened_z": RidgeWhitenedDetector(mask, ridge),
    }
