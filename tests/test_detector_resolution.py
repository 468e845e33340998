"""bench/detector_resolution.py's paired bootstrap: the interval says what the clips can resolve."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from detector_resolution import paired_bootstrap  # noqa: E402


def run(rng, n_clean, n_bad, separation):
    labels = np.r_[np.zeros(n_clean, int), np.ones(n_bad, int)]
    good = rng.normal(size=labels.size) + separation * labels  # a detector that sees the anomalies
    blind = rng.normal(size=labels.size)  # one that does not
    return labels, good, blind


def test_a_clear_difference_is_resolved_and_identical_detectors_are_not_told_apart():
    rng = np.random.default_rng(0)
    labels, good, blind = run(rng, 45, 225, 2.0)
    clear = paired_bootstrap([{"labels": labels, "diffusion": good, "zscore_max": blind}], n_boot=300)
    assert clear["difference"] > 0.3 and clear["ci95"][0] > 0
    same = paired_bootstrap([{"labels": labels, "diffusion": good, "zscore_max": good}], n_boot=300)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]


def test_fewer_clean_clips_give_a_wider_interval():
    rng = np.random.default_rng(1)
    widths = {}
    for n_clean in (15, 135):
        labels, good, _ = run(rng, n_clean, 225, 0.6)
        other = good + rng.normal(scale=1.0, size=good.size)
        widths[n_clean] = paired_bootstrap([{"labels": labels, "diffusion": good, "zscore_max": other}], n_boot=300)["half_width"]
    assert widths[15] > 1.5 * widths[135]


def test_runs_that_score_different_clips_are_refused():
    rng = np.random.default_rng(2)
    a = dict(zip(("labels", "diffusion", "zscore_max"), run(rng, 5, 10, 1.0)))
    b = dict(zip(("labels", "diffusion", "zscore_max"), run(rng, 6, 9, 1.0)))
    with pytest.raises(AssertionError, match="do not score the same clips"):
        paired_bootstrap([a, b], n_boot=10)
