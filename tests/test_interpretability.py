"""Attention against univariate category selectivity, with a shuffled-label null: a planted
category-selective region is found; random attention and shuffled labels are not."""

from __future__ import annotations

import numpy as np

from modalmerge.analysis.attention import attention_selectivity, selectivity_maps


def planted(seed=0, n_voxels=60, per_run=40, n_runs=4):
    """Category c raises voxels 10c .. 10c+9 (three categories); noise elsewhere."""
    rng = np.random.default_rng(seed)
    X, y, runs = [], [], []
    for run in range(n_runs):
        labels = np.repeat([0, 1, 2], per_run // 3 + 1)[:per_run]
        for label in labels:
            volume = rng.normal(size=n_voxels)
            volume[10 * label:10 * label + 10] += 1.0
            X.append(volume)
            y.append(label)
            runs.append(run)
    return np.array(X), np.array(y), np.array(runs)


def test_selectivity_maps_peak_in_the_planted_regions():
    X, y, runs = planted()
    f_values, t_values = selectivity_maps(X, y, [0, 1, 2])
    assert set(np.argsort(f_values)[-30:]) == set(range(30))
    for c in range(3):
        assert set(np.argsort(t_values[c])[-10:]) == set(range(10 * c, 10 * c + 10))


def test_attention_on_the_selective_region_is_above_the_null_and_random_attention_is_not():
    X, y, runs = planted()
    rng = np.random.default_rng(1)
    attending = rng.random((3, 60)) * 0.2
    for c in range(3):
        attending[c, 10 * c:10 * c + 10] += 1.0  # each category's map points at its own region
    found = attention_selectivity(attending, X, y, runs, [0, 1, 2], n_permutations=200)
    assert found["any_category"]["above_null_99th"] and found["category_specific"]["above_null_99th"]
    assert found["category_specific"]["p_value"] < 0.01
    random = attention_selectivity(rng.random((3, 60)), X, y, runs, [0, 1, 2], n_permutations=200)
    assert not random["category_specific"]["above_null_99th"]


def test_shuffled_labels_destroy_the_match():
    X, y, runs = planted()
    attending = np.zeros((3, 60))
    for c in range(3):
        attending[c, 10 * c:10 * c + 10] = 1.0
    shuffled = np.random.default_rng(2).permutation(y)
    result = attention_selectivity(attending + 0.01 * np.random.default_rng(3).random((3, 60)), X, shuffled, runs,
                                   [0, 1, 2], n_permutations=200)
    assert not result["category_specific"]["above_null_99th"]
