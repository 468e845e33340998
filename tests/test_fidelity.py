"""Fidelity metrics on known cases, and the evaluation's trivial generators landing where expected."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.analysis import fidelity_metrics as F
from modalmerge.analysis.fidelity import evaluate_fidelity
from modalmerge.data.dataset import PreparedData


@pytest.fixture(scope="module")
def data(prepared_slice) -> PreparedData:
    return PreparedData.load(prepared_slice["volumes"], with_raw=True)


def test_identical_volumes_have_ssim_one_and_noise_near_zero(data):
    window = F.ssim_window(data.mask)
    volume = data.X[5]
    assert F.masked_ssim(volume, volume, data.mask, 10.0, window) == pytest.approx(1.0)
    noise = np.random.default_rng(0).normal(size=volume.shape).astype(np.float32) * data.mask
    assert abs(F.masked_ssim(noise, data.X[data.label_ids == 0].mean(0), data.mask, 10.0, window)) < 0.1


def test_ssim_window_shrinks_to_fit_a_small_grid():
    assert F.ssim_window(np.ones((37, 19, 1), bool))["win_size"] == 11
    small = F.ssim_window(np.ones((6, 8, 8), bool))
    assert small["win_size"] <= 6 and small["dimensions"] == 3


def test_c2st_is_chance_for_one_distribution_and_high_for_two():
    rng = np.random.default_rng(0)
    same = F.c2st(rng.normal(size=(200, 30)), rng.normal(size=(200, 30)))
    different = F.c2st(rng.normal(size=(200, 30)), rng.normal(1.0, 1, size=(200, 30)))
    assert 0.38 < same < 0.62
    assert different > 0.9


def test_mmd_detects_a_shift_and_not_a_resample():
    rng = np.random.default_rng(1)
    same = F.mmd_rbf(rng.normal(size=(80, 10)), rng.normal(size=(80, 10)), n_permutations=50)
    shifted = F.mmd_rbf(rng.normal(size=(80, 10)), rng.normal(1.0, 1, size=(80, 10)), n_permutations=50)
    assert same["p_value"] > 0.05
    assert shifted["p_value"] < 0.05 and shifted["mmd2"] > same["mmd2"]


def as_synthetic(X, label_ids, design_run) -> dict:
    return {"X": X, "label_ids": label_ids, "design_run": design_run, "sampler": "test", "guidance_scale": 1.0}


def test_training_category_means_as_a_generator_reach_exactly_the_ceiling(data):
    categories = np.arange(8)
    train = ~data.is_test
    means = F.category_means(data.X[train], data.label_ids[train], categories)
    test_labels = data.label_ids[data.is_test]
    X = np.zeros((len(test_labels), *data.mask.shape), np.float32)
    for c in categories:
        X[test_labels == c] = means[c]
    X[test_labels == 8] = data.X[train][data.label_ids[train] == 8].mean(0)
    results, table = evaluate_fidelity(data, as_synthetic(X, test_labels, data.runs[data.is_test]), n_permutations=20)
    assert results["ssim"] == pytest.approx(results["ssim_ceiling"], abs=1e-6)
    assert results["ssim_fraction_of_ceiling"] == pytest.approx(1.0)
    assert results["category_specificity_gap"] == pytest.approx(results["category_specificity_gap_ceiling"], abs=1e-6)
    # the measurements on this data: ceiling about 0.58, grand mean 0.53, wrong category 0.40, zero map 0.41
    assert 0.45 < results["ssim_ceiling"] < 0.75
    assert results["ssim_baselines"]["wrong_category_training_mean"] < results["ssim_ceiling"]
    assert results["category_specificity_gap_ceiling"] > 0.05
    assert len(table) == 8


def test_real_held_out_volumes_as_synthetic_get_real_scores_and_shuffled_labels_destroy_category_fidelity(data):
    test = data.is_test
    real = as_synthetic(data.X[test], data.label_ids[test], data.runs[test])
    results, _ = evaluate_fidelity(data, real, n_permutations=20)
    assert results["ssim"] == pytest.approx(1.0)  # the same volumes: identical category means
    assert results["category_fidelity"] == pytest.approx(results["category_fidelity_real_heldout"])
    assert results["category_fidelity"] > 0.4
    assert results["c2st_accuracy"] < 0.6  # a set is indistinguishable from itself
    shuffled = as_synthetic(data.X[test], np.random.default_rng(0).permutation(data.label_ids[test]), data.runs[test])
    broken, _ = evaluate_fidelity(data, shuffled, n_permutations=20)
    assert broken["category_fidelity"] < 0.25
    assert broken["category_specificity_gap"] < 0.25 * results["category_specificity_gap"]


def test_grand_mean_generator_has_no_category_specificity(data):
    test_labels = data.label_ids[data.is_test]
    grand = data.X[~data.is_test].mean(0)
    X = np.repeat(grand[None], len(test_labels), 0)
    results, _ = evaluate_fidelity(data, as_synthetic(X, test_labels, data.runs[data.is_test]), n_permutations=20)
    assert results["ssim"] == pytest.approx(results["ssim_baselines"]["training_grand_mean"], abs=1e-6)
    assert results["category_specificity_gap"] == pytest.approx(0.0, abs=1e-9)
    assert results["ssim_raw_intensity"] > 0.9  # raw intensities: anatomy dominates, uninformative
