"""The training runs' residual dynamics, given to synthetic runs after they are sampled.

Every network this project trained either models time and loses single-volume realism, or keeps its
realism and leaves consecutive volumes nearly independent (bench/README.md sections 24, 25, 30). A run's
residual (each volume minus the mean of its label) is modelled here as a stationary process along the
eigenvectors of its within-category covariance, each eigenvector with its own autocorrelation (the
strong components slow, the weak ones white). :class:`ResidualColouring` keeps a synthetic run's
volumes and gives their residual that autocorrelation: along each eigenvector
``u_j``, the run's component ``z_j`` (n volumes) becomes ``S_j z_j``, where ``S_j`` is the symmetric square
root of the n x n Toeplitz matrix of the component's autocorrelation at lags 0 .. ``max_lag`` (zero
beyond; negative eigenvalues set to zero; rows rescaled to unit norm). A component that is white in time
keeps its variance at every volume and gets exactly that autocorrelation. The residual is taken around
the synthetic runs' own label means, which are put back unchanged. It is a hybrid (a linear temporal
part around another generator's volumes), so its linear part alone, :meth:`ResidualColouring.sample`
(Gaussian volumes of the within-category covariance around the training runs' means, coloured the same
way; ``gaussian_coloured`` in ``fidelity.json``), is the baseline it is read against.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.utils.validation import check_is_fitted

from .fidelity_metrics import within_category_residual
from .generator_baselines import autocorrelation, component_temporal_correlation, lag_sums, within_category_covariance


VARIANCES = ("kept", "matched", "redistributed", "matched_after", "run_matched")
WHITEN_FLOOR = 0.05  # smallest eigenvalue of an estimated autocorrelation Toeplitz matrix that whitening inverts


class ResidualColouring(BaseEstimator):
    """``fit(X (n, n_voxels), labels, runs)`` on training runs (volumes of a run consecutive, in order);
    ``colour([run volumes], [run labels])`` gives synthetic runs the fitted residual dynamics;
    ``sample([run labels])`` is the linear part alone (Gaussian residual), concatenated like
    :meth:`~modalmerge.analysis.generator_baselines.LinearGaussianGenerator.sample`."""

    def __init__(self, max_lag: int = 7, seed: int = 0):
        self.max_lag = max_lag
        self.seed = seed

    def fit(self, X: np.ndarray, labels: np.ndarray, runs: np.ndarray):
        if self.max_lag < 0:
            raise ValueError(f"max_lag must be >= 0; got {self.max_lag}.")
        X = np.asarray(X, np.float64)
        self.means_ = {int(c): X[labels == c].mean(0) for c in np.unique(labels)}
        variances, basis = np.linalg.eigh(within_category_covariance(X, labels))
        self.variances_, self.basis_ = np.maximum(variances, 0), basis
        # each run's residual around its own label means (what a z-scored run's fixed total splits into, beside
        # its own label means), Ledoit-Wolf over the runs, along the same eigenvectors
        within_runs = LedoitWolf().fit(np.concatenate([within_category_residual(X[runs == r], labels[runs == r])
                                                       for r in np.unique(runs)]))
        self.run_variances_ = np.maximum(np.einsum("vj,vw,wj->j", basis, within_runs.covariance_, basis), 0)
        lags = component_temporal_correlation(X, labels, runs, basis, self.max_lag + 1)
        self.autocorrelation_ = lags[:, 0, :]  # (n_components, max_lag + 1), lag 0 = 1
        self._roots = {}
        return self

    def roots(self, n: int) -> np.ndarray:
        """``(n_components, n, n)``: each component's colouring matrix for a run of ``n`` volumes."""
        check_is_fitted(self, "autocorrelation_")
        if n not in self._roots:
            root = toeplitz_power(self.autocorrelation_, n, 0.5)
            self._roots[n] = root / np.linalg.norm(root, axis=2, keepdims=True)
        return self._roots[n]

    def colour(self, run_volumes: list[np.ndarray], run_labels: list[np.ndarray],
               variance: str = "kept", whiten: bool = False) -> list[np.ndarray]:
        """Each run (n_i, n_voxels) with its residual's components coloured in time; float32. The residual
        is taken around the runs' own mean of each label (over all the runs given), which is put back
        unchanged: a generator's category means are its own, and a constant offset (a mean that differs
        from the training runs') is not white, so colouring it would amplify it. ``variance``: ``kept`` =
        each component keeps the variance the generator gave it; ``matched`` = each is first scaled so that
        its variance over all the runs given is the fitted one (``variances_``); ``redistributed`` = the
        fitted ones times the generator's total residual variance over their sum (the training runs'
        shares, the generator's total); ``matched_after`` = each coloured component is scaled so that its
        variance over all the runs given is the fitted one (after the colouring, which adds variance to a
        component that is not white in time); ``run_matched`` = matched with the residual of each run taken around that
        run's own label means (put back unchanged) and the fitted variance the training runs' of the same quantity
        (``run_variances_``: a z-scored real run's total is fixed, and how it splits between its own label means and
        its residual varies from run to run, so the pooled residual's variance added to a generator's own label
        means overshoots the total). ``whiten``: before that, each run's components are made white in
        time with the inverse symmetric root of the Toeplitz matrix of their own autocorrelation at lags
        0 .. ``max_lag`` over the runs given (eigenvalues floored at ``WHITEN_FLOOR``), so that the colouring,
        which assumes a white input, does not compound the generator's own autocorrelation with the fitted one."""
        check_is_fitted(self, "autocorrelation_")
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}; got {variance!r}.")
        volumes, residual = (run_residual if variance == "run_matched" else pooled_residual)(run_volumes, run_labels)
        components = residual @ self.basis_
        if whiten:
            runs = split_runs(components, run_labels)
            own = autocorrelation(runs, self.max_lag + 1).T
            components = np.concatenate([np.einsum("jts,sj->tj", toeplitz_power(own, len(z), -0.5, WHITEN_FLOOR), z)
                                         for z in runs])
        if variance in ("matched", "redistributed", "run_matched"):
            target = self.run_variances_ if variance == "run_matched" else self.variances_
            if variance == "redistributed":
                target = target * (components.var(0).sum() / target.sum())
            components = scaled_to(components, target)
        coloured = [self._colour(z) for z in split_runs(components, run_labels)]
        if variance == "matched_after":
            coloured = split_runs(scaled_to(np.concatenate(coloured), self.variances_), run_labels)
        return [self._volumes(z, m) for z, m in zip(coloured, split_runs(volumes - residual, run_labels))]

    def sample(self, run_labels: list[np.ndarray]) -> np.ndarray:
        """The linear part alone: the fitted means plus a Gaussian residual of the within-category
        covariance, coloured like :meth:`colour`; the runs concatenated, float32."""
        check_is_fitted(self, "autocorrelation_")
        rng = np.random.default_rng(self.seed)
        runs = [self._volumes(self._colour(rng.standard_normal((len(labels), len(self.variances_))) * np.sqrt(self.variances_)),
                              self._means_of(labels)) for labels in run_labels]
        return np.concatenate(runs)

    def residual_lag1(self, run_volumes: list[np.ndarray], run_labels: list[np.ndarray]) -> float:
        """The variance-weighted lag-1 autocorrelation of the runs' residual components around the runs'
        own label means (0 for a residual white in time; the training runs' own value after
        :meth:`colour` of a white residual)."""
        check_is_fitted(self, "autocorrelation_")
        runs = split_runs(pooled_residual(run_volumes, run_labels)[1] @ self.basis_, run_labels)
        squares, products = lag_sums([components - components.mean(0) for components in runs], 2)
        return float(products.sum() / squares.sum())

    def _colour(self, components: np.ndarray) -> np.ndarray:
        return np.einsum("jts,sj->tj", self.roots(len(components)), components)

    def _volumes(self, coloured: np.ndarray, means: np.ndarray) -> np.ndarray:
        return (means + coloured @ self.basis_.T).astype(np.float32)

    def _means_of(self, labels: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "means_")
        unknown = sorted(set(np.unique(labels).tolist()) - set(self.means_))
        if unknown:
            raise ValueError(f"labels {unknown} were not in the training data; known: {sorted(self.means_)}.")
        return np.stack([self.means_[int(c)] for c in labels])


def pooled_residual(run_volumes: list[np.ndarray], run_labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The runs concatenated (float64) and their residual around the runs' own mean of each label (over all
    the runs given)."""
    volumes = concatenated(run_volumes, run_labels)
    return volumes, within_category_residual(volumes, np.concatenate(run_labels))


def run_residual(run_volumes: list[np.ndarray], run_labels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The runs concatenated (float64) and each run's residual around that run's own mean of each label."""
    volumes = concatenated(run_volumes, run_labels)
    return volumes, np.concatenate([within_category_residual(v, y)
                                    for v, y in zip(split_runs(volumes, run_labels), run_labels)])


def concatenated(run_volumes: list[np.ndarray], run_labels: list[np.ndarray]) -> np.ndarray:
    """The runs' volumes concatenated in float64, after checking that every run has its labels."""
    if len(run_volumes) != len(run_labels):
        raise ValueError(f"{len(run_volumes)} runs of volumes but {len(run_labels)} of labels.")
    return np.concatenate([np.asarray(v, np.float64) for v in run_volumes])


def split_runs(pooled: np.ndarray, run_labels: list[np.ndarray]) -> list[np.ndarray]:
    """``pooled`` rows cut back into runs of the lengths of ``run_labels``."""
    return np.split(pooled, np.cumsum([len(labels) for labels in run_labels])[:-1])


def scaled_to(components: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each column scaled so that its variance is ``target``'s entry (a column without variance is left as it is)."""
    current = components.var(0)
    return components * np.sqrt(target / np.where(current > 0, current, np.inf))


def toeplitz_power(autocorrelation: np.ndarray, n: int, power: float, floor: float = 0.0) -> np.ndarray:
    """``(k, n, n)``: the symmetric ``power`` of each row's n x n Toeplitz matrix of ``autocorrelation``
    ``(k, lags)`` (lags 0, 1, ...; zero beyond), eigenvalues first raised to at least ``floor`` (0 drops the
    negative ones, for a root)."""
    padded = np.zeros((len(autocorrelation), n))
    keep = min(n, autocorrelation.shape[1])
    padded[:, :keep] = autocorrelation[:, :keep]
    values, vectors = np.linalg.eigh(padded[:, np.abs(np.subtract.outer(np.arange(n), np.arange(n)))])
    values = np.maximum(values, floor)
    scaled = np.where(values > 0, values, 1.0) ** power * (values > 0)
    return (vectors * scaled[:, None, :]) @ np.transpose(vectors, (0, 2, 1))

