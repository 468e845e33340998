"""model.gaussian_baseline_shrinkage: run_cv shrinks the Gaussian's covariance as leave-one-run-out likelihood says."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from modalmerge.analysis.generator_baselines import cross_validated_shrinkage
from modalmerge.config import validate_config
from modalmerge.errors import ModalMergeInputError

V, RUNS, PER_RUN, CLASSES = 40, 6, 60, 3


def runs_of(rho: float, seed: int = 0, n_runs: int = RUNS):
    """Runs of a known Gaussian (category means + a correlated covariance), each volume an AR(1) step of
    coefficient ``rho`` from the last within its run: ``rho`` 0 gives independent volumes."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(V, 4))
    covariance = factor @ factor.T + 0.5 * np.eye(V)
    root = np.linalg.cholesky(covariance)
    means = rng.normal(scale=1.0, size=(CLASSES, V))
    X, labels, runs = [], [], []
    for run in range(n_runs):
        y = np.repeat(np.arange(CLASSES), PER_RUN // CLASSES)
        noise = np.zeros((PER_RUN, V))
        noise[0] = root @ rng.normal(size=V)
        for i in range(1, PER_RUN):
            noise[i] = rho * noise[i - 1] + np.sqrt(1 - rho ** 2) * (root @ rng.normal(size=V))
        X.append(means[y] + noise), labels.append(y), runs.append(np.full(PER_RUN, run + 1))
    return np.concatenate(X), np.concatenate(labels), np.concatenate(runs), means, covariance


def held_out_nll(covariance, means, X, labels):
    residual = X - means[labels]
    values, basis = np.linalg.eigh(covariance)
    return float((0.5 * (((residual @ basis) ** 2 / values).sum(1) + np.log(values).sum())).mean())


def test_correlated_volumes_get_more_shrinkage_than_ledoit_wolf_and_a_fresh_run_is_better_described():
    """Ledoit-Wolf counts every volume as independent; with volumes strongly correlated in time (AR 0.9) the
    effective sample is small, leave-one-run-out asks for more shrinkage, and that covariance gives a fresh run
    of the same process a higher likelihood than Ledoit-Wolf's."""
    X, labels, runs, means, _ = runs_of(0.9)
    a, covariance = cross_validated_shrinkage(X, labels, runs)
    residual = X - np.stack([X[labels == c].mean(0) for c in range(CLASSES)])[labels]
    lw = LedoitWolf().fit(residual)
    assert a > 3 * lw.shrinkage_  # measured: 0.08 against 0.015
    fresh, fresh_labels, *_ = runs_of(0.9, seed=0, n_runs=RUNS + 3)
    fresh, fresh_labels = fresh[-3 * PER_RUN:], fresh_labels[-3 * PER_RUN:]  # runs the fit never saw
    assert held_out_nll(covariance, means, fresh, fresh_labels) < held_out_nll(lw.covariance_, means, fresh, fresh_labels) - 2  # 17.2 vs 25.8


def test_independent_plentiful_volumes_are_barely_shrunk():
    """With independent volumes, many more than voxels, the sample covariance is already good: little shrinkage."""
    X, labels, runs, _, covariance = runs_of(0.0)
    a, fitted = cross_validated_shrinkage(X, labels, runs)
    assert a <= 0.1  # measured: 0.03
    assert np.abs(fitted - covariance).max() < 0.35 * np.abs(covariance).max()


def test_one_run_is_split_in_halves_and_bad_input_is_refused():
    X, labels, runs, _, _ = runs_of(0.5)
    one = runs == 1
    a, covariance = cross_validated_shrinkage(X[one], labels[one], runs[one])
    assert 0 <= a < 1 and covariance.shape == (V, V)
    with pytest.raises(ValueError, match="one row per volume"):
        cross_validated_shrinkage(X, labels[:-1], runs)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        cross_validated_shrinkage(X, labels, runs, grid=[0.5, 1.0])


def test_the_config_refuses_shrinkage_without_the_baseline():
    assert validate_config({})["model"]["gaussian_baseline_shrinkage"] == "ledoit_wolf"
    with pytest.raises(ModalMergeInputError, match="gaussian_baseline_shrinkage"):
        validate_config({"model": {"gaussian_baseline": False, "gaussian_baseline_shrinkage": "run_cv"}})


def test_the_train_stage_fits_the_shrunk_gaussian_on_the_model_runs(prepared_slice):
    """fit_gaussian_baseline with run_cv: the baseline's covariance is the cross-validated one of the model's runs
    (its eigenvalues), and the shrinkage chosen is returned (the training summary records it)."""
    from modalmerge.data.dataset import PreparedData
    from modalmerge.diffusion.checkpoints import build_diffusion
    from modalmerge.stages.train import fit_gaussian_baseline

    data = PreparedData.load(prepared_slice["volumes"])
    config = validate_config({"model": {"clip_length": 4, "channels": [8, 16], "attention_levels": [1],
                                        "temporal_heads": 2, "temporal_head_dim": 8, "norm_groups": 4}})
    network = build_diffusion(config["model"], config["diffusion"], data.X.shape[1:], len(data.class_names), data.mask).network
    runs = [1, 2, 3, 4]
    a = fit_gaussian_baseline(network, data, runs, "run_cv")
    own = np.isin(data.runs, runs)
    expected_a, covariance = cross_validated_shrinkage(data.X[own][:, data.mask], data.label_ids[own], data.runs[own])
    assert a == expected_a and 0 < a < 1
    assert np.allclose(np.sort(network.values.numpy()), np.sort(np.linalg.eigvalsh(covariance)), rtol=1e-4, atol=1e-6)
    assert fit_gaussian_baseline(network, data, runs) is None  # Ledoit-Wolf: its own shrinkage, nothing chosen
    assert not np.allclose(np.sort(network.values.numpy()), np.sort(np.linalg.eigvalsh(covariance)), rtol=1e-2)
    with pytest.raises(ValueError, match="ledoit_wolf' or 'run_cv"):
        fit_gaussian_baseline(network, data, runs, "oas")
