"""The batched permutation null of the project's linear SVM solves the same problem as liblinear:
same minimiser (to liblinear's tolerance), same predictions as a LinearSVC refitted on every
shuffled label set, on planted data and on the real embedded slice."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from modalmerge.analysis.decoding import linear_svm, refit_null, shuffle_within_runs
from modalmerge.analysis.svm import LinearSVM, squared_hinge_ovr
from modalmerge.data.dataset import PreparedData


def problem(n_classes, n_train=120, n_test=60, n_features=80, seed=0):
    """A class signal in a few features, features of unequal scale, labels in 4 'runs'."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_train + n_test)
    y[:n_classes] = np.arange(n_classes)
    X = rng.normal(size=(n_train + n_test, n_features)) * rng.uniform(0.5, 3, n_features)
    for shift in range(0, 40, 8):
        X[np.arange(len(y)), y + shift] += 1.0
    runs = np.repeat(np.arange(4), n_train // 4)
    return X[:n_train], y[:n_train], runs, X[n_train:], y[n_train:]


def test_solver_finds_liblinears_minimiser_and_its_optimality_conditions():
    X, y, _, _, _ = problem(3)
    C = 0.05
    design = np.hstack([X, np.ones((len(X), 1))])
    targets = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    W = squared_hinge_ovr(design, targets, C)
    slack = np.maximum(1 - targets * (design @ W), 0)
    gradient = W - 2 * C * design.T @ (slack * targets)
    assert np.linalg.norm(gradient, axis=0).max() < 1e-5 * np.linalg.norm(2 * C * design.T @ targets, axis=0).min()
    reference = LinearSVC(C=C, tol=1e-8, max_iter=100000, random_state=0).fit(X, y)
    np.testing.assert_allclose(W[:-1].T, reference.coef_, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(W[-1], reference.intercept_, atol=2e-4)


@pytest.mark.parametrize("n_classes", [2, 3, 8])
def test_permuted_predictions_equal_liblinear_refits(n_classes):
    X, y, runs, X_test, y_test = problem(n_classes)
    rng = np.random.default_rng(1)
    label_sets = [y] + [shuffle_within_runs(y, runs, rng) for _ in range(12)]
    svm = LinearSVM(C=0.05, random_state=0)
    fast = svm.permuted_predictions(X, label_sets, X_test)
    for labels, predicted in zip(label_sets, fast):
        np.testing.assert_array_equal(predicted, LinearSVC(C=0.05, random_state=0).fit(X, labels).predict(X_test))
    accuracies = svm.permuted_accuracies(X, label_sets, X_test, y_test)
    assert accuracies[0] > 1.5 / n_classes  # the true labels decode; the shuffles are the null
    assert np.mean(accuracies[1:]) < accuracies[0]


def test_refit_null_of_the_project_svm_equals_liblinear_refits_on_the_real_slice(prepared_slice):
    data = PreparedData.load(prepared_slice["volumes"])
    keep = data.label_ids != data.rest_id
    X, y, runs = data.X[:, data.mask][keep], data.label_ids[keep], data.runs[keep]
    train, test = np.isin(runs, data.train_runs), np.isin(runs, data.test_runs)
    args = (X[train], y[train], runs[train], X[test], y[test], 6)
    fast = refit_null(linear_svm(), *args, np.random.default_rng(3))
    slow = refit_null(LinearSVC(C=0.01, max_iter=5000, random_state=0), *args, np.random.default_rng(3))
    assert fast == slow
    # with appended extra rows (the augmented decoder's synthetic volumes), kept unshuffled
    extra = (X[train][:40] + 0.1, y[train][:40])
    fast = refit_null(linear_svm(), *args, np.random.default_rng(4), *extra)
    slow = refit_null(LinearSVC(C=0.01, max_iter=5000, random_state=0), *args, np.random.default_rng(4), *extra)
    assert fast == slow


def test_refit_null_does_not_refit_the_project_svm():
    X, y, runs, X_test, y_test = problem(3)

    class NoRefit(LinearSVM):
        def fit(self, X, y):
            raise AssertionError("refit_null refitted instead of solving the label sets together")
    assert len(refit_null(NoRefit(C=0.05), X, y, runs, X_test, y_test, 5, np.random.default_rng(0))) == 5


def test_only_the_default_problem_is_batched():
    X, y, runs, X_test, _ = problem(3)
    with pytest.raises(ValueError, match="squared hinge"):
        LinearSVM(C=0.05, loss="hinge").permuted_predictions(X, [y], X_test)
    with pytest.raises(ValueError, match="same classes"):
        LinearSVM(C=0.05).permuted_predictions(X, [y, np.where(y == 2, 1, y)], X_test)
