"""A standardised ridge classifier with efficient leave-one-out alpha choice whose permutation
null needs no refits: every permuted label set is solved with one eigendecomposition.

Standardising the features and the Gram matrix of the training rows do not depend on the
labels, so for all shuffled label sets at once the dual ridge solution, its leave-one-out errors
(the choice of alpha) and the held-out decisions are matrix products with the same eigenvectors.
The result is the held-out accuracy that ``StandardScaler`` + ``RidgeClassifierCV`` refitted on
each label set would give (same alpha choice rule: the lowest mean squared leave-one-out error on
the +-1 coded targets, the first alpha on ties); tests compare the two prediction for prediction.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from .permuted import PermutedDecisionsMixin, shared_classes


class StandardRidgeClassifierCV(PermutedDecisionsMixin, BaseEstimator, ClassifierMixin):
    """``StandardScaler`` then ``RidgeClassifierCV(alphas)`` (efficient leave-one-out inside the
    training rows of each fit), with :meth:`permuted_accuracies` for refit-free permutation tests."""

    def __init__(self, alphas=tuple(np.logspace(1, 5, 9))):
        self.alphas = alphas

    def fit(self, X, y):
        self.pipeline_ = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.asarray(self.alphas))).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, X):
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict(X)

    def permuted_decisions(self, X_train, label_sets: np.ndarray, X_test):
        """Decision values ``(n_sets, n_test, n_targets)`` for label sets ``(n_sets, n_train)``, and
        the classes (every set must hold the same classes, as a within-run shuffle does)."""
        classes = shared_classes(label_sets)
        scaler = StandardScaler().fit(X_train)
        Xs, Xt = scaler.transform(X_train).astype(np.float64), scaler.transform(X_test).astype(np.float64)
        offset = Xs.mean(axis=0)
        Xs, Xt = Xs - offset, Xt - offset
        eigvals, Q = np.linalg.eigh(Xs @ Xs.T)
        cross = Xt @ Xs.T  # (n_test, n_train): held-out decisions are cross @ dual coefficients
        n = len(Xs)
        # +-1 coding of RidgeClassifier (LabelBinarizer(neg_label=-1)); one column for two classes
        codes = np.where(label_sets[..., None] == classes, 1.0, -1.0)
        if len(classes) == 2:
            codes = codes[..., 1:]
        y_offset = codes.mean(axis=1, keepdims=True)  # (sets, 1, targets)
        centred = codes - y_offset
        QT_y = np.einsum("nk,snt->skt", Q, centred)
        QT_ones = Q.sum(axis=0)
        best_score = np.full(len(label_sets), -np.inf)
        best_coef = np.zeros_like(centred)
        for alpha in np.asarray(self.alphas, dtype=float):
            D = 1.0 / (eigvals + alpha)
            dual = np.einsum("nk,skt->snt", Q, D[None, :, None] * QT_y)
            diagonal = (Q ** 2) @ D - (Q @ (D * QT_ones)) / n  # diagonal of the centred hat complement
            looe = dual / diagonal[None, :, None]
            score = -np.mean(looe ** 2, axis=(1, 2))
            better = score > best_score
            best_score[better] = score[better]
            best_coef[better] = dual[better]
        return np.einsum("mn,snt->smt", cross, best_coef) + y_offset, classes
