"""Decoding, the classical side: estimators, scoring and permutation tests on arrays.

Every decoder is scored on the same held-out runs (the split of mask-and-normalize); the
classical ones also under leave-one-run-out over all runs, for comparison with the literature.
Each gets accuracy, balanced accuracy, per-category recall, a confusion matrix and a
permutation p-value (labels shuffled within runs). The diffusion-based decoders are in
:mod:`.diffusion_decoding`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import binomtest
from joblib import Parallel, delayed, parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ..data.clips import label_blocks
from .svm import LinearSVM


def linear_svm() -> LinearSVM:
    """The project's linear decoder (decoding, augmentation, category fidelity, TSTR): C=0.01 was
    the best of a coarse grid under leave-one-run-out on the training runs. A ``LinearSVC`` whose
    permutation refits are solved together (:class:`~.svm.LinearSVM`). A fixed ``random_state``
    makes liblinear's dual solver (chosen when features outnumber samples) reproducible in any
    process, parallel refits included."""
    return LinearSVM(C=0.01, max_iter=5000, random_state=0)


def linear_svm_accuracy(X_fit, y_fit, X_score, y_score) -> float:
    """Accuracy on ``(X_score, y_score)`` of :func:`linear_svm` fitted on ``(X_fit, y_fit)``."""
    return float((linear_svm().fit(X_fit, y_fit).predict(X_score) == y_score).mean())


def shrinkage_lda() -> LinearDiscriminantAnalysis:
    """Linear discriminant analysis with a Ledoit-Wolf shrunk covariance: the Gaussian generative
    classifier with a covariance shared by the categories (the Bayes rule when the data are that). On
    these data it is the strongest classical decoder: block-averaged, 86.1 % leave-one-run-out over
    runs 1-9 against the linear SVM's 69.4 % (``bench/classifier_metric.py --loro``)."""
    return LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")


def classical_decoders() -> dict:
    """The reference decoders a reviewer knows (scikit-learn pipelines)."""
    return {
        "linear_svm": linear_svm(),
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
        "shrinkage_lda": shrinkage_lda(),
    }


class NilearnDecoder(BaseEstimator, ClassifierMixin):
    """nilearn's :class:`~nilearn.decoding.Decoder` (SVC, default ANOVA screening) on masked volumes.

    Takes ``(n, n_voxels)`` rows like the other decoders and rebuilds images with ``mask_img``.
    """

    def __init__(self, mask_img=None, screening_percentile=20, seed=0):
        self.mask_img = mask_img
        self.screening_percentile = screening_percentile
        self.seed = seed

    def _images(self, rows):
        from nilearn.maskers import NiftiMasker
        masker = NiftiMasker(self.mask_img).fit()
        return masker.inverse_transform(rows)

    def fit(self, X, y):
        from nilearn.decoding import Decoder
        from sklearn.model_selection import StratifiedKFold
        self.decoder_ = Decoder(estimator="svc", mask=self.mask_img, screening_percentile=self.screening_percentile,
                                cv=StratifiedKFold(3, shuffle=True, random_state=self.seed), standardize=False, verbose=0)
        with warnings.catch_warnings():
            # nilearn raises the percentile when the mask is small against a whole brain and warns on
            # every fit; the percentile it used is recorded in fit_notes_ instead
            warnings.filterwarnings("ignore", message="screening_percentile set to", category=UserWarning)
            self.decoder_.fit(self._images(X), y)
        self.classes_ = np.unique(y)
        effective = float(self.decoder_.screening_percentile_)
        self.fit_notes_ = {"screening_percentile_requested": self.screening_percentile,
                           "screening_percentile_effective": effective}
        if effective != self.screening_percentile:
            self.fit_notes_["screening_note"] = (
                f"nilearn used screening_percentile {effective:g} instead of {self.screening_percentile}: it sets the "
                "percentile against a whole-brain volume, and this mask is small against one")
        return self

    def predict(self, X):
        check_is_fitted(self, "decoder_")
        return np.asarray(self.decoder_.predict(self._images(X)))


def block_average(X: np.ndarray, labels: np.ndarray, runs: np.ndarray):
    """Average the volumes of each stimulus block (consecutive identical labels in a run)."""
    blocks = list(label_blocks(labels, runs))
    return (np.stack([X[start:stop].mean(0) for _, start, stop, _ in blocks]),
            np.array([label for _, _, _, label in blocks]), np.array([run for run, _, _, _ in blocks]))


def shuffle_within_runs(labels: np.ndarray, runs: np.ndarray, rng) -> np.ndarray:
    shuffled = labels.copy()
    for run in np.unique(runs):
        index = np.flatnonzero(runs == run)
        shuffled[index] = labels[rng.permutation(index)]
    return shuffled


def one_thread_per_process():
    """joblib's process pool with one BLAS/OpenMP thread per worker. Snakemake exports
    OMP_NUM_THREADS (and OpenBLAS's, MKL's) = the rule's threads to every job, and loky's workers
    keep an inherited value instead of their own limit: n_jobs workers x threads BLAS threads on
    threads cores. Measured in the decode stage on 2 cores: the logistic-regression permutation
    refits took 44 s that way and 2 s with one thread per worker."""
    return parallel_config(backend="loky", inner_max_num_threads=1)


def fixed_predictions_null(predicted: np.ndarray, truth: np.ndarray, runs: np.ndarray, n_permutations: int,
                           rng) -> list[float]:
    """Accuracies of fixed ``predicted`` labels against ``truth`` shuffled within runs: the null of a
    classifier that has no refit (a pretrained generative classifier)."""
    return [float(np.mean(predicted == shuffle_within_runs(truth, runs, rng))) for _ in range(n_permutations)]


def permutation_p_value(null, observed: float) -> float:
    """(1 + #null >= observed) / (1 + #null): the permutation p-value that is never 0."""
    null = np.asarray(null)
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def refit_null(estimator, X_train, y_train, runs_train, X_test, y_test, n_permutations: int, rng,
               X_extra=None, y_extra=None, n_jobs: int = 1) -> list[float]:
    """Held-out accuracies of ``estimator`` refitted on training labels shuffled within runs
    (``X_extra``/``y_extra``, e.g. synthetic volumes, are appended unshuffled to every fit).

    The shuffles are drawn first, in order, from ``rng``; the refits then run in ``n_jobs``
    processes, so the null is the same for any ``n_jobs``. An estimator that can score many label
    sets exactly without refitting (``permuted_accuracies``, e.g. the standardised ridge of
    :mod:`.ridge`) does so.
    """
    if X_extra is not None:
        X_train = np.concatenate([X_train, X_extra])
    shuffles = [shuffle_within_runs(y_train, runs_train, rng) for _ in range(n_permutations)]
    if y_extra is not None:
        shuffles = [np.concatenate([permuted, y_extra]) for permuted in shuffles]
    if hasattr(estimator, "permuted_accuracies"):
        return estimator.permuted_accuracies(X_train, shuffles, X_test, y_test)
    with one_thread_per_process():
        return Parallel(n_jobs=n_jobs)(delayed(_refit_accuracy)(estimator, X_train, permuted, X_test, y_test)
                                       for permuted in shuffles)


def _refit_accuracy(estimator, X_train, y_train, X_test, y_test) -> float:
    return float(np.mean(clone(estimator).fit(X_train, y_train).predict(X_test) == y_test))


def score(y_true, y_pred, categories, groups) -> dict:
    """Accuracy, balanced accuracy, per-category recall, confusion matrix, per-group (run) accuracy."""
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "recall_per_category": recall_score(y_true, y_pred, labels=categories, average=None, zero_division=0).tolist(),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=categories).tolist(),
        "fold_scores": [float(np.mean(y_true[groups == g] == y_pred[groups == g])) for g in np.unique(groups)],
        "fold_runs": [int(g) for g in np.unique(groups)],
    }


def chance_level(y_test: np.ndarray, groups: np.ndarray) -> dict:
    """Chance from the real class counts: the majority-class rate per held-out run, and 1 / n_classes."""
    per_run = {int(g): float(np.bincount(y_test[groups == g]).max() / (groups == g).sum()) for g in np.unique(groups)}
    return {"chance": float(1 / len(np.unique(y_test))), "majority_rate_per_run": per_run}


def heldout_split_decoding(estimator, X, y, runs, train_runs, test_runs, categories, n_permutations, seed,
                           n_jobs: int = 1) -> dict:
    """Fit on the training runs, score on the held-out runs; permutation test by refitting with labels
    shuffled within the training runs. Returns the score dict with ``p_value`` and ``null``."""
    train, test = np.isin(runs, train_runs), np.isin(runs, test_runs)
    if set(runs[train]) & set(runs[test]):
        raise RuntimeError("a held-out run is in the training set")  # never expected: guards the split
    model = clone(estimator).fit(X[train], y[train])
    predicted = model.predict(X[test])
    result = score(y[test], predicted, categories, runs[test])
    result.update(held_out_predictions(predicted, y[test], runs[test]))
    result.update(getattr(model, "fit_notes_", {}))  # what the fitted estimator reports of itself
    null = refit_null(estimator, X[train], y[train], runs[train], X[test], y[test], n_permutations,
                      np.random.default_rng(seed), n_jobs=n_jobs)
    result.update(chance_level(y[test], runs[test]))
    result["p_value"] = permutation_p_value(null, result["accuracy"])
    result["null_accuracies"] = null
    result["n_permutations"] = n_permutations
    result["train_runs"], result["test_runs"] = [int(r) for r in train_runs], [int(r) for r in test_runs]
    return result


def held_out_predictions(predicted, truth, runs) -> dict:
    """What a decoder said about each held-out unit (volume or block), in order, for paired tests."""
    return {"held_out_predictions": [int(v) for v in predicted], "held_out_truth": [int(v) for v in truth],
            "held_out_runs": [int(v) for v in runs]}


def mcnemar_exact(correct: np.ndarray, correct_other: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired correctness: of the units only one of two decoders gets
    right, is the split further from even than chance allows? ``smallest_attainable_p_value``: the p of
    a decoder right on every unit the other gets wrong and wrong on none it gets right (2 x 0.5^k for
    k units the other misses): no decoder can show itself better than the other at a smaller p on
    these units."""
    correct, correct_other = np.asarray(correct, bool), np.asarray(correct_other, bool)
    only, only_other = int(np.sum(correct & ~correct_other)), int(np.sum(~correct & correct_other))
    p = binomtest(only, only + only_other, 0.5).pvalue if only + only_other else 1.0
    missed = int(np.sum(~correct_other))
    best = binomtest(missed, missed, 0.5).pvalue if missed else 1.0
    return {"only_this_right": only, "only_other_right": only_other, "p_value": float(p),
            "smallest_attainable_p_value": float(best)}


def paired_tests(result: dict, others: dict) -> dict:
    """``result`` against each of ``others`` (decoders scored on the same held-out units, by name): the
    accuracy difference and the exact McNemar test. Units in another order or with other labels are
    a bug (the decoders did not see the same held-out data), not something to test around."""
    truth = (result["held_out_runs"], result["held_out_truth"])
    correct = np.equal(result["held_out_predictions"], result["held_out_truth"])
    out = {}
    for name, other in others.items():
        if (other["held_out_runs"], other["held_out_truth"]) != truth:
            raise RuntimeError(f"{name} was scored on other held-out units than the decoder it is paired with")
        correct_other = np.equal(other["held_out_predictions"], other["held_out_truth"])
        out[name] = {"accuracy_difference": float(correct.mean() - correct_other.mean()),
                     **mcnemar_exact(correct, correct_other), "n_units": len(correct)}
    return out


def leave_one_run_out(estimator, X, y, runs, categories, n_jobs: int = 1) -> dict:
    """Leave-one-run-out over all runs (the literature's protocol)."""
    with one_thread_per_process():
        predictions = cross_val_predict(estimator, X, y, groups=runs, cv=LeaveOneGroupOut(), n_jobs=n_jobs)
    result = score(y, predictions, categories, runs)
    result["accuracy_std_over_runs"] = float(np.std(result["fold_scores"]))
    return result


def augmentation_curve(X, y, runs, train_runs, test_runs, categories, syn_X, syn_y, fractions,
                       fraction: float, n_permutations: int, seed: int, n_jobs: int = 1) -> dict:
    """The linear SVM trained on real training runs plus a growing share of synthetic volumes
    ``syn_X`` ``(n, n_voxels)`` with labels ``syn_y`` (rest volumes are left out)."""
    keep = np.isin(syn_y, categories)
    syn_X, syn_y = syn_X[keep], syn_y[keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(syn_X))
    train, test = np.isin(runs, train_runs), np.isin(runs, test_runs)
    curve = []
    for share in fractions:
        n = int(round(share * len(syn_X)))
        pick = order[:n]
        model = linear_svm().fit(np.concatenate([X[train], syn_X[pick]]), np.concatenate([y[train], syn_y[pick]]))
        curve.append({"synthetic_fraction": share, "n_synthetic": n,
                      "accuracy": float(np.mean(model.predict(X[test]) == y[test]))})
    # the reported decoder uses the configured share (chosen before seeing held-out data, not from the curve)
    n_used = int(round(fraction * len(syn_X)))
    extra_X, extra_y = syn_X[order[:n_used]], syn_y[order[:n_used]]
    model = linear_svm().fit(np.concatenate([X[train], extra_X]), np.concatenate([y[train], extra_y]))
    result = score(y[test], model.predict(X[test]), categories, runs[test])
    result.update(chance_level(y[test], runs[test]))
    # permutation test: the real training labels shuffled within runs (synthetic labels kept)
    null = refit_null(linear_svm(), X[train], y[train], runs[train], X[test], y[test], n_permutations, rng,
                      extra_X, extra_y, n_jobs=n_jobs)
    result.update({"curve": curve, "synthetic_fraction": fraction, "n_synthetic": n_used,
                   "train_runs": [int(r) for r in train_runs], "test_runs": [int(r) for r in test_runs],
                   "p_value": permutation_p_value(null, result["accuracy"]),
                   "null_accuracies": null, "n_permutations": len(null)})
    return result
