"""Does synthetic data help when real data is scarce? A classical decoder trained on 1, 2, 3, ...
real training runs, with and without synthetic volumes from a generator fitted on those same runs
only, scored on the held-out runs.

:func:`scarce_data_curve` takes the synthesis as a callable, so the same curve is drawn for the
classical generator (:class:`GeneratorSynthesiser`, fitted in seconds inside the decode stage) and
for diffusion models trained on the same run subsets (``bench/learning_curve.py``). The held-out
runs are only scored: nothing (subset, share, decoder) is chosen on them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone

from ..errors import ModalMergeInputError
from .decoding import linear_svm, one_thread_per_process
from .generator_baselines import LinearGaussianGenerator

Synthesise = Callable[[tuple, int], "tuple[np.ndarray, np.ndarray]"]


def run_subsets(train_runs, sizes, repeats: int, seed: int) -> list[tuple[int, ...]]:
    """``repeats`` subsets of ``train_runs`` per size in ``sizes`` (distinct where the runs allow;
    the full set repeats itself, and then only the synthesis seed varies). Sizes above the number of
    training runs are an error, not silently dropped."""
    train_runs = sorted(int(r) for r in train_runs)
    too_big = [k for k in sizes if not 1 <= k <= len(train_runs)]
    if too_big:
        raise ModalMergeInputError(f"learning-curve sizes {too_big} are outside 1..{len(train_runs)} (the number of training "
                         f"runs {train_runs}); set decode.learning_curve_sizes to sizes in that range.")
    rng = np.random.default_rng(seed)
    subsets = []
    for k in sorted(set(int(k) for k in sizes)):
        seen: set[tuple[int, ...]] = set()
        for _ in range(repeats):
            for _try in range(50):  # a new subset where one is left
                subset = tuple(sorted(int(r) for r in rng.choice(train_runs, k, replace=False)))
                if subset not in seen:
                    break
            seen.add(subset)
            subsets.append(subset)
    return subsets


class GeneratorSynthesiser:
    """Synthetic runs from :class:`LinearGaussianGenerator` fitted on the given runs only: for every
    run of the subset, ``runs_per_run`` synthetic runs that follow its design (label sequence)."""

    def __init__(self, X: np.ndarray, labels: np.ndarray, runs: np.ndarray, runs_per_run: int = 1, seed: int = 0):
        self.X, self.labels, self.runs = X, labels, runs
        self.runs_per_run, self.seed = runs_per_run, seed

    def __call__(self, subset: tuple, index: int) -> tuple[np.ndarray, np.ndarray]:
        pick = np.isin(self.runs, subset)
        generator = LinearGaussianGenerator(seed=self.seed + index).fit(self.X[pick], self.labels[pick], self.runs[pick])
        designs = [self.labels[self.runs == run] for run in subset for _ in range(self.runs_per_run)]
        return generator.sample(designs), np.concatenate(designs)


def describe(values) -> dict:
    values = np.asarray(values, float)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [float(v) for v in values]}


def scarce_data_curve(X: np.ndarray, labels: np.ndarray, runs: np.ndarray, test_runs, categories,
                      subsets: list[tuple[int, ...]], synthesise: Synthesise, decoder=None, n_jobs: int = 1) -> dict:
    """Held-out accuracy of ``decoder`` (default: the project's per-volume linear SVM) trained on
    each subset's real category volumes, on those plus the synthetic volumes ``synthesise(subset,
    i)`` returns (rest volumes left out), and on the synthetic ones alone; per size, mean ± sd over
    the subsets of that size of each and of the gain (augmented - real). Subsets run in ``n_jobs``
    processes; the result does not depend on it."""
    decoder = linear_svm() if decoder is None else decoder
    test = np.isin(runs, test_runs) & np.isin(labels, categories)
    with one_thread_per_process():
        rows = Parallel(n_jobs=n_jobs)(delayed(_subset_scores)(decoder, X, labels, runs, test, categories, subset, i, synthesise)
                                       for i, subset in enumerate(subsets))
    by_size = {}
    for k in sorted({row["n_runs"] for row in rows}):
        of_size = [row for row in rows if row["n_runs"] == k]
        by_size[str(k)] = {key: describe([row[key] for row in of_size])
                           for key in ("real", "augmented", "gain", "synthetic_only")}
        by_size[str(k)]["n_subsets"] = len(of_size)
    return {"subsets": rows, "by_size": by_size, "test_runs": [int(r) for r in test_runs],
            "chance": 1 / len(categories), "n_test": int(test.sum())}


def _subset_scores(decoder, X, labels, runs, test, categories, subset, index, synthesise) -> dict:
    train = np.isin(runs, subset) & np.isin(labels, categories)
    syn_X, syn_y = synthesise(subset, index)
    keep = np.isin(syn_y, categories)
    syn_X, syn_y = syn_X[keep], syn_y[keep]

    def accuracy(features, targets) -> float:
        return float(np.mean(clone(decoder).fit(features, targets).predict(X[test]) == labels[test]))

    real = accuracy(X[train], labels[train])
    augmented = accuracy(np.concatenate([X[train], syn_X]), np.concatenate([labels[train], syn_y]))
    return {"n_runs": len(subset), "runs": [int(r) for r in subset], "n_real": int(train.sum()),
            "n_synthetic": int(len(syn_y)), "real": real, "augmented": augmented, "gain": augmented - real,
            "synthetic_only": accuracy(syn_X, syn_y)}
