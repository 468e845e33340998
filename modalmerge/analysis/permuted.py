"""Refit-free permutation nulls: held-out predictions and accuracies of an estimator refitted on many
shuffled label sets, for estimators that compute the decision values of all label sets together."""

from __future__ import annotations

import numpy as np


def shared_classes(label_sets: np.ndarray) -> np.ndarray:
    """The classes of label sets ``(n_sets, n)`` that all hold the same ones (as within-run shuffles of
    one label vector do)."""
    classes = np.unique(label_sets[0])
    if any(not np.array_equal(np.unique(labels), classes) for labels in label_sets):
        raise ValueError("every permuted label set must hold the same classes")
    return classes


class PermutedDecisionsMixin:
    """:meth:`permuted_predictions` and :meth:`permuted_accuracies` from the estimator's
    ``permuted_decisions(X_train, label_sets, X_test) -> (decisions (n_sets, n_test, n_targets),
    classes)``. Two classes are one target whose positive side is the second class, as
    scikit-learn's linear classifiers code them; more classes are one target each (one-vs-rest)."""

    def permuted_predictions(self, X_train, label_sets, X_test) -> np.ndarray:
        """Predicted classes ``(n_sets, n_test)`` of this estimator fitted on ``X_train`` with each label
        vector of ``label_sets`` (a sequence of ``(n_train,)`` arrays)."""
        decisions, classes = self.permuted_decisions(X_train, np.asarray(label_sets), X_test)
        if decisions.shape[-1] == 1:
            return classes[(decisions[..., 0] > 0).astype(int)]
        return classes[decisions.argmax(axis=-1)]

    def permuted_accuracies(self, X_train, label_sets, X_test, y_test) -> list[float]:
        """Held-out accuracy on ``(X_test, y_test)`` for each label set, without refitting."""
        return [float(np.mean(p == y_test)) for p in self.permuted_predictions(X_train, label_sets, X_test)]
