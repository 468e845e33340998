"""A classical generator every claim of realism is read against, and the metrics of any synthetic set.

:class:`LinearGaussianGenerator` (``gaussian_var1`` in ``fidelity.json``): the training runs'
category means (the categories and rest) plus a residual that follows a voxelwise AR(1) process
(one coefficient per voxel, estimated within training runs) driven by Gaussian innovations whose
spatial covariance is the Ledoit-Wolf estimate of the training runs' AR(1) innovations. It fits
and samples in seconds; a diffusion model that is not more realistic than it has not earned its
place as a generator.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf, shrunk_covariance
from sklearn.utils.validation import check_is_fitted

from . import fidelity_metrics as F
from .decoding import linear_svm_accuracy


class LinearGaussianGenerator(BaseEstimator):
    """Category means + voxelwise AR(1) residual with Ledoit-Wolf spatially correlated innovations.

    ``fit(X (n, n_voxels), labels (n,), runs (n,))`` on training runs; ``sample([labels of run 1,
    labels of run 2, ...])`` returns ``(n_total, n_voxels)`` runs that follow those label sequences.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X: np.ndarray, labels: np.ndarray, runs: np.ndarray):
        X = np.asarray(X, np.float64)
        self.labels_ = np.unique(labels)
        self.means_ = {int(c): X[labels == c].mean(0) for c in self.labels_}
        residual = X - np.stack([self.means_[int(c)] for c in labels])
        current, previous = [], []
        for run in np.unique(runs):
            r = residual[runs == run]
            current.append(r[1:])
            previous.append(r[:-1])
        current, previous = np.concatenate(current), np.concatenate(previous)
        # least squares per voxel within runs, kept inside the stationary range
        self.phi_ = np.clip((current * previous).sum(0) / (previous ** 2).sum(0), -0.99, 0.99)
        innovations = current - self.phi_ * previous
        self.covariance_ = LedoitWolf().fit(innovations).covariance_
        self.cholesky_ = np.linalg.cholesky(self.covariance_)
        # the stationary residual std of each voxel, for the first volume of a run
        self.stationary_scale_ = 1 / np.sqrt(1 - self.phi_ ** 2)
        return self

    def sample(self, run_labels: list[np.ndarray]) -> np.ndarray:
        check_is_fitted(self, "cholesky_")
        rng = np.random.default_rng(self.seed)
        runs = []
        for labels in run_labels:
            means = self._means_of(labels)
            innovations = rng.standard_normal((len(labels), len(self.phi_))) @ self.cholesky_.T
            residual = np.empty_like(innovations)
            residual[0] = innovations[0] * self.stationary_scale_
            for t in range(1, len(labels)):
                residual[t] = self.phi_ * residual[t - 1] + innovations[t]
            runs.append(means + residual)
        return np.concatenate(runs).astype(np.float32)

    def innovations(self, X: np.ndarray, labels: np.ndarray, runs: np.ndarray, whiten: bool = False) -> np.ndarray:
        """The fitted linear part removed from ``X`` (n, n_voxels): each volume's AR(1) innovation
        (residual from the category means minus ``phi`` x the previous volume's residual, within its
        run; a run's first volume scaled to the innovation's variance), divided by each voxel's
        innovation std. What a hybrid generator's nonlinear part (a diffusion model) learns; inverted
        exactly by :meth:`from_innovations` (with the same ``whiten``).

        ``whiten=True`` also removes the spatial covariance: the standardised innovations are multiplied
        by the inverse square root of their Ledoit-Wolf correlation matrix (ZCA whitening, the
        symmetric choice, which keeps each voxel as close to itself as whitening allows). Under the
        classical generator these are independent unit Gaussians, so a model of them that learns nothing
        gives back the classical generator, and only what is not Gaussian is left to learn."""
        check_is_fitted(self, "cholesky_")
        residual = np.asarray(X, np.float64) - self._means_of(labels)
        out = np.empty_like(residual)
        for run in np.unique(runs):
            index = np.flatnonzero(runs == run)  # volumes of a run are consecutive in time, in order
            r = residual[index]
            out[index[0]] = r[0] / self.stationary_scale_
            out[index[1:]] = r[1:] - self.phi_ * r[:-1]
        out /= self.innovation_std_
        return (out @ self._correlation_root(-0.5) if whiten else out).astype(np.float32)

    def from_innovations(self, innovations: np.ndarray, labels: np.ndarray, runs: np.ndarray,
                         whiten: bool = False) -> np.ndarray:
        """Volumes whose standardised innovations are ``innovations`` (n, n_voxels): the category means
        of ``labels`` plus the AR(1) recursion run through each run in order. With Gaussian innovations
        of the fitted covariance this is :meth:`sample`; with a diffusion model's, a hybrid generator."""
        check_is_fitted(self, "cholesky_")
        innovation = np.asarray(innovations, np.float64)
        if whiten:
            innovation = innovation @ self._correlation_root(0.5)
        innovation = innovation * self.innovation_std_
        residual = np.empty_like(innovation)
        for run in np.unique(runs):
            index = np.flatnonzero(runs == run)
            residual[index[0]] = innovation[index[0]] * self.stationary_scale_
            for previous, t in zip(index[:-1], index[1:]):
                residual[t] = self.phi_ * residual[previous] + innovation[t]
        return (self._means_of(labels) + residual).astype(np.float32)

    @property
    def innovation_std_(self) -> np.ndarray:
        return np.sqrt(np.diag(self.covariance_))

    def _correlation_root(self, power: float) -> np.ndarray:
        """The innovations' Ledoit-Wolf correlation matrix to ``power`` (symmetric; -0.5 whitens, 0.5 colours)."""
        std = self.innovation_std_
        values, vectors = np.linalg.eigh(self.covariance_ / np.outer(std, std))
        return (vectors * values ** power) @ vectors.T

    def _means_of(self, labels: np.ndarray) -> np.ndarray:
        unknown = sorted(set(np.unique(labels).tolist()) - set(self.means_))
        if unknown:
            raise ValueError(f"labels {unknown} were not in the training data; known: {sorted(self.means_)}.")
        return np.stack([self.means_[int(c)] for c in labels])


def set_metrics(X_syn, y_syn, segments, X_test, y_test, X_train, y_train, mask, categories, window,
                data_range, decoder, seed: int = 0, n_permutations: int = 200, basis=None) -> dict:
    """The realism of one synthetic set ``X_syn`` (n, x, y, z) with labels ``y_syn`` and synthetic-run
    ids ``segments`` against the held-out real volumes: the numbers every generator is compared on
    (with ``basis``, the training runs' within-category eigenvectors, strongest first, also how its
    residual variance spreads over them)."""
    rng = np.random.default_rng(seed)
    real_means = F.category_means(X_test, y_test, categories)
    syn_means = F.category_means(X_syn, y_syn, categories)
    A_syn, A_test, A_train = X_syn[:, mask], X_test[:, mask], X_train[:, mask]
    n_mmd = min(len(A_syn), len(A_test), 300)
    cat_syn, cat_test = np.isin(y_syn, categories), np.isin(y_test, categories)
    return {
        "ssim": float(F.mean_map_ssim(syn_means, real_means, mask, data_range, window).mean()),
        "category_specificity_gap": F.specificity_gap(syn_means, real_means, mask, data_range, window),
        "map_correlation": float(F.map_correlation(syn_means, real_means, mask).mean()),
        "rsa": F.rsa(syn_means, real_means, mask),
        "voxel_std_map_correlation": float(np.corrcoef(A_syn.std(0), A_test.std(0))[0, 1]),
        "global_std": float(A_syn.std()),
        "connectivity_similarity": F.connectivity_similarity(X_syn, X_test, mask),
        "temporal_autocorrelation": F.temporal_autocorrelation(X_syn, segments, mask),
        "mmd": F.mmd_rbf(A_syn[rng.choice(len(A_syn), n_mmd, replace=False)],
                         A_test[rng.choice(len(A_test), n_mmd, replace=False)], n_permutations, seed),
        "c2st_accuracy": F.c2st(A_syn, A_test, seed),
        "c2st_rbf_accuracy": F.c2st(A_syn, A_test, seed, kernel="rbf"),
        "category_fidelity": float((decoder.predict(A_syn[cat_syn]) == y_syn[cat_syn]).mean()),
        "tstr_accuracy": linear_svm_accuracy(A_syn[cat_syn], y_syn[cat_syn], A_test[cat_test], y_test[cat_test]),
        **memorisation(A_syn, A_test, A_train),
        **({"residual_spectrum": F.residual_spectrum(A_syn, y_syn, basis)} if basis is not None else {}),
    }


def memorisation(A_syn: np.ndarray, A_test: np.ndarray, A_train: np.ndarray) -> dict:
    """Median distance of synthetic and of held-out real volumes to their nearest training volume, and
    the ratio (well below 1: the generator copies its training data)."""
    synthetic = float(np.median(F.nearest_distance(A_syn, A_train)))
    real = float(np.median(F.nearest_distance(A_test, A_train)))
    return {"median_nearest_training_distance_synthetic": synthetic,
            "median_nearest_training_distance_heldout_real": real, "memorisation_ratio": synthetic / real}


def within_category_covariance(X: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance ``(n_voxels, n_voxels)`` of volumes ``X`` around the mean of their label
    (the categories and rest): the Gaussian part of the data that a label does not explain (what the
    sampler's ``gaussian_posterior`` variance draws its missing noise from)."""
    return LedoitWolf().fit(F.within_category_residual(X, labels)).covariance_


def cross_validated_shrinkage(X: np.ndarray, labels: np.ndarray, runs: np.ndarray,
                              grid: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """``(a, covariance)``: the within-category sample covariance ``S`` of ``X`` shrunk towards its mean
    eigenvalue, ``(1 - a) S + a (tr S / d) I``, with ``a`` from ``grid`` (default 0, 0.01, .. 0.95) chosen by
    leave-one-run-out Gaussian log-likelihood: ``S`` from all runs but one, the held-out run's volumes scored,
    summed over runs (the residuals are taken around the category means of all the volumes, as for the final
    fit, so a run may lack a category). With a single run its two halves in time are the folds.

    Ledoit-Wolf chooses its own ``a`` (the same family) for independent samples; fMRI volumes are correlated in
    time and runs differ, so a held-out run is better described with more shrinkage (bench/README.md 44)."""
    grid = np.round(np.arange(0, 0.951, 0.01), 2) if grid is None else np.asarray(grid, float)
    X, labels, runs = np.asarray(X, np.float64), np.asarray(labels), np.asarray(runs)
    if not (len(X) == len(labels) == len(runs)):
        raise ValueError(f"X, labels and runs must have one row per volume; got {len(X)}, {len(labels)}, {len(runs)}.")
    if np.any(grid < 0) or np.any(grid >= 1):
        raise ValueError(f"shrinkage grid values must lie in [0, 1); got {grid.min()} .. {grid.max()}.")
    folds = [runs == run for run in np.unique(runs)]
    if len(folds) == 1:  # one run: its first and second half
        folds = [np.arange(len(X)) < len(X) // 2, np.arange(len(X)) >= len(X) // 2]
    residual = F.within_category_residual(X, labels)  # around the means of all volumes, as the fit below
    nll = np.zeros(len(grid))
    for held in folds:
        values, basis = np.linalg.eigh(np.cov(residual[~held], rowvar=False, bias=True))
        values = np.maximum(values, 0.0)
        energy = ((residual[held] @ basis) ** 2).sum(0)  # per eigencomponent, summed over held-out volumes
        variances = (1 - grid[:, None]) * values + grid[:, None] * values.mean()
        with np.errstate(divide="ignore", invalid="ignore"):  # a singular fold covariance at small a: infinite
            terms = np.where(variances > 0, energy / variances + held.sum() * np.log(variances), np.inf)
        nll += 0.5 * terms.sum(1)
    a = float(grid[int(np.argmin(nll))])
    return a, shrunk_covariance(np.cov(residual, rowvar=False, bias=True), a)


def component_temporal_correlation(X: np.ndarray, labels: np.ndarray, runs: np.ndarray, basis: np.ndarray,
                                   length: int) -> np.ndarray:
    """The temporal correlation ``(n_components, length, length)`` within clips of ``length`` volumes of
    each component of the volumes ``X`` around their label's mean along the columns of ``basis`` (e.g.
    :func:`within_category_covariance`'s eigenvectors): a Toeplitz matrix of the component's
    autocorrelation at lags 0 .. length - 1, pooled over the runs (consecutive volumes of one run only).
    The biased estimator (lag sums over all volumes) keeps every matrix positive semi-definite."""
    if length < 1:
        raise ValueError(f"length must be >= 1; got {length}.")
    components = F.within_category_residual(X, labels) @ np.asarray(basis, np.float64)
    series = [components[runs == run] for run in np.unique(runs)]
    for run, one in zip(np.unique(runs), series):
        if len(one) < length:
            raise ValueError(f"run {run} has {len(one)} volumes, fewer than the clip length {length}.")
    lags = autocorrelation(series, length)
    index = np.abs(np.subtract.outer(np.arange(length), np.arange(length)))
    return np.transpose(lags[index], (2, 0, 1))


def lag_sums(series: list[np.ndarray], n_lags: int) -> np.ndarray:
    """``(n_lags, n_columns)``: per column, the sum over the series (each ``(n_i, n_columns)``, consecutive
    volumes of one run) of the products of values ``lag`` apart, lags 0 .. n_lags - 1."""
    sums = np.zeros((n_lags, series[0].shape[1]))
    for one in series:
        for lag in range(min(n_lags, len(one))):
            sums[lag] += (one[lag:] * one[:len(one) - lag]).sum(0)
    return sums


def autocorrelation(series: list[np.ndarray], n_lags: int) -> np.ndarray:
    """``(n_lags, n_columns)``: each column's autocorrelation at lags 0 .. n_lags - 1 pooled over the series
    (:func:`lag_sums` over the lag-0 sum: the biased estimator, whose Toeplitz matrices are positive
    semi-definite); a column without variance is uncorrelated (lag 0 = 1, the rest 0)."""
    sums = lag_sums(series, n_lags)
    lags = sums / np.where(sums[0] > 0, sums[0], 1)
    lags[0] = 1.0
    return lags
