"""The refit-free permutation null of the standardised ridge probe equals refitting
StandardScaler + RidgeClassifierCV on every shuffled label set, prediction for prediction."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from modalmerge.analysis.decoding import refit_null, shuffle_within_runs
from modalmerge.analysis.ridge import StandardRidgeClassifierCV


def problem(n_classes, n_train=90, n_test=40, n_features=150, seed=0):
    """A weak class signal in a few features (alpha choice then differs between label sets)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n_train + n_test)
    y[:n_classes] = np.arange(n_classes)
    X = rng.normal(size=(n_train + n_test, n_features)) * rng.uniform(0.5, 3, n_features)
    for shift in range(0, 40, 8):  # the class raises a few features
        X[np.arange(len(y)), y + shift] += 1.5
    runs = np.repeat(np.arange(3), n_train // 3)
    return X[:n_train], y[:n_train], runs, X[n_train:], y[n_train:]


@pytest.mark.parametrize("n_classes", [2, 3, 8])
def test_permuted_predictions_equal_sklearn_refits(n_classes):
    X, y, runs, X_test, y_test = problem(n_classes)
    alphas = np.logspace(-1, 4, 8)
    rng = np.random.default_rng(1)
    label_sets = [y] + [shuffle_within_runs(y, runs, rng) for _ in range(15)]
    probe = StandardRidgeClassifierCV(alphas=tuple(alphas))
    decisions, classes = probe.permuted_decisions(X, np.array(label_sets), X_test)
    chosen = set()
    for labels, decision in zip(label_sets, decisions):
        reference = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=alphas)).fit(X, labels)
        chosen.add(reference[-1].alpha_)
        expected = reference.decision_function(X_test)
        np.testing.assert_allclose(decision.reshape(expected.shape), expected, atol=1e-8)
    assert len(chosen) > 1  # the label sets really chose different alphas
    fast = probe.permuted_accuracies(X, label_sets, X_test, y_test)
    slow = [float(np.mean(make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=alphas)).fit(X, labels)
                          .predict(X_test) == y_test)) for labels in label_sets]
    assert fast == slow
    assert fast[0] > 1.5 / n_classes  # the true labels decode; the shuffles are the null


def test_refit_null_uses_the_shared_factorisation_and_keeps_the_shuffles():
    X, y, runs, X_test, y_test = problem(4)
    probe = StandardRidgeClassifierCV(alphas=(1.0, 100.0))
    fast = refit_null(probe, X, y, runs, X_test, y_test, 12, np.random.default_rng(5))
    pipeline = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.array([1.0, 100.0])))
    slow = refit_null(pipeline, X, y, runs, X_test, y_test, 12, np.random.default_rng(5))
    assert fast == slow

    class NoRefit(StandardRidgeClassifierCV):
        def fit(self, X, y):
            raise AssertionError("refit_null refitted instead of using the shared factorisation")

    assert refit_null(NoRefit(alphas=(1.0, 100.0)), X, y, runs, X_test, y_test, 12, np.random.default_rng(5)) == fast


def test_label_sets_with_different_classes_are_refused():
    X, y, runs, X_test, _ = problem(3)
    other = y.copy()
    other[other == 2] = 1
    with pytest.raises(ValueError, match="same classes"):
        StandardRidgeClassifierCV().permuted_decisions(X, np.array([y, other]), X_test)
