"""Anomaly injection (ground truth, held-out runs only, reproducible) and detector metrics."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.analysis.anomalies import ANOMALY_TYPES, AnomalyInjector, inject_anomalies
from modalmerge.analysis.detectors import VarianceDeficitDetector, ZScoreDetector
from modalmerge.analysis.anomaly_metrics import clip_metrics, evaluate_detector
from modalmerge.data.dataset import PreparedData

STRENGTHS = {"blob": [3.0], "dropout": [1.0], "spike": [0.5], "motion": [0.05], "noise_burst": [1.5]}
DEFAULTS = {k: v[0] for k, v in STRENGTHS.items()}


@pytest.fixture(scope="module")
def data(prepared_slice) -> PreparedData:
    return PreparedData.load(prepared_slice["volumes"], with_raw=True)


@pytest.fixture(scope="module")
def injected(data) -> dict:
    return inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, 8, STRENGTHS, seed=0)


def test_only_held_out_runs_are_injected(data, injected):
    assert set(injected["clip_runs"]) == {10, 11, 12}
    assert data.is_test[injected["clip_starts"]].all()
    normals = injected["types"] == "none"
    for clip, start in zip(injected["clips"][normals], injected["clip_starts"][normals]):
        assert np.array_equal(clip, data.X[start:start + 8])


@pytest.mark.parametrize("kind", ["blob", "dropout", "spike", "noise_burst"])
def test_injection_changes_only_voxels_inside_the_truth_mask(injected, kind):
    normals = injected["clips"][injected["types"] == "none"]
    pick = np.flatnonzero(injected["types"] == kind)
    for i in pick:
        changed = injected["clips"][i] != normals[injected["source_clip"][i]]
        assert changed.any()
        assert not (changed & ~injected["masks"][i]).any()


def test_motion_changes_only_the_documented_volumes(injected):
    normals = injected["clips"][injected["types"] == "none"]
    for i in np.flatnonzero(injected["types"] == "motion"):
        changed_frames = (injected["clips"][i] != normals[injected["source_clip"][i]]).reshape(8, -1).any(1)
        assert 1 <= changed_frames.sum() <= 3  # the ``duration`` shifted volumes
        assert not injected["masks"][i][~changed_frames].any()


def test_injection_is_reproducible_from_its_seed(data, injected):
    again = inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, 8, STRENGTHS, seed=0)
    assert np.array_equal(again["clips"], injected["clips"]) and np.array_equal(again["masks"], injected["masks"])
    other = inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, 8, STRENGTHS, seed=1)
    assert not np.array_equal(other["clips"], injected["clips"])


def test_every_type_is_present_with_balanced_normals(injected):
    assert set(injected["types"]) == set(ANOMALY_TYPES) | {"none"}
    n_normal = (injected["types"] == "none").sum()
    for kind in ANOMALY_TYPES:
        assert (injected["types"] == kind).sum() == n_normal


def test_unknown_type_is_reported(data):
    with pytest.raises(ValueError, match="anomaly type must be one of"):
        AnomalyInjector(data.mask).inject("fire", data.X[:8], 1.0, np.random.default_rng(0))


def test_ground_truth_scores_auroc_one_and_random_scores_about_half():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    assert clip_metrics(labels.astype(float), labels)["auroc"] == 1.0
    assert abs(clip_metrics(rng.random(2000), labels)["auroc"] - 0.5) < 0.05


def test_an_oracle_voxel_map_gets_perfect_voxel_metrics(data, injected):
    maps = injected["masks"].astype(float)
    scores = maps.reshape(len(maps), -1).max(1) + 1e-3 * np.random.default_rng(0).random(len(maps))
    entry = evaluate_detector(scores, maps, injected, data.mask, DEFAULTS, 0.05)
    assert entry["auroc"] == pytest.approx(1.0, abs=1e-3)
    assert entry["by_type"]["blob"]["voxel_auprc"] == pytest.approx(1.0)
    assert entry["by_type"]["blob"]["dice_at_clean_threshold"] == pytest.approx(1.0)


def test_dropout_fools_deviation_detectors_but_not_the_variance_deficit(data, injected):
    train = ~data.is_test
    train_clips = np.stack([data.X[np.flatnonzero(train)[i:i + 8]] for i in range(0, 900, 8)])
    pick = np.isin(injected["types"], ["none", "dropout"])
    labels = injected["labels"][pick]
    zscore = ZScoreDetector(data.mask, 1.0).fit(train_clips).decision_function(injected["clips"][pick])
    deficit = VarianceDeficitDetector(data.mask).fit(train_clips).decision_function(injected["clips"][pick])
    assert clip_metrics(zscore, labels)["auroc"] < 0.6
    assert clip_metrics(deficit, labels)["auroc"] > 0.7


UNSEEN = {"frozen_frame": [3], "ghost": [1.0], "kspace_spike": [1.0], "drift": [1.0]}


@pytest.fixture(scope="module")
def unseen(data) -> dict:
    return inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, 8, UNSEEN, seed=0)


def test_the_unseen_types_are_not_in_the_workflows_anomaly_set():
    from modalmerge.analysis.anomalies import UNSEEN_TYPES
    assert set(UNSEEN) == set(UNSEEN_TYPES) and not set(UNSEEN_TYPES) & set(ANOMALY_TYPES)


def test_each_unseen_type_does_what_its_artifact_does(data, unseen):
    normals = unseen["clips"][unseen["types"] == "none"]
    brain = data.mask
    for i in np.flatnonzero(unseen["types"] != "none"):
        kind, clip, truth = unseen["types"][i], unseen["clips"][i], unseen["masks"][i]
        clean = normals[unseen["source_clip"][i]]
        changed = (clip != clean).reshape(8, -1).any(1)
        assert not (clip[:, ~brain] != 0).any()  # nothing outside the brain
        if kind == "frozen_frame":  # three volumes repeat the one before them
            start = int(np.flatnonzero(changed)[0])
            assert changed.sum() <= 3 and start >= 1
            for f in range(start, start + 3):
                np.testing.assert_array_equal(clip[f], clean[start - 1])
            assert truth.reshape(8, -1).any(1).sum() == 3
        elif kind == "ghost":  # the volume shifted by half the field of view along the second axis
            frames = np.flatnonzero(changed)
            assert 1 <= len(frames) <= 3
            f = frames[0]
            expected = np.where(brain, np.roll(clean[f], clean.shape[2] // 2, axis=1), 0)
            np.testing.assert_allclose(clip[f] - clean[f], expected, atol=1e-5)
            assert not (truth & ~(np.abs(clip - clean) > 0.5 - 1e-6)).any()
        elif kind == "kspace_spike":  # one volume carries a plane wave of amplitude 1
            assert changed.sum() == 1
            wave = (clip - clean)[changed][0][brain]
            assert np.abs(wave).max() == pytest.approx(1.0, abs=0.05) and abs(wave.mean()) < 0.3
        elif kind == "drift":  # a ramp from 0 to 1 over the clip, every brain voxel
            ramp = (clip - clean)[:, brain].mean(1)
            np.testing.assert_allclose(ramp, np.linspace(0, 1, 8), atol=1e-5)
            assert not truth[0].any() and truth[1:].any(axis=(1, 2, 3)).all()


def test_a_frozen_frame_needs_a_volume_to_repeat(data):
    with pytest.raises(ValueError, match="frozen_frame strength"):
        AnomalyInjector(data.mask).inject("frozen_frame", data.X[:8], 8, np.random.default_rng(0))


def test_the_anomaly_set_does_not_depend_on_the_order_of_the_configs_keys(data, injected):
    """A configuration written with sorted keys (yaml.safe_dump does that) gives the same set."""
    shuffled = {k: STRENGTHS[k] for k in sorted(STRENGTHS, reverse=True)}
    again = inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, 8, shuffled, seed=0)
    assert np.array_equal(again["clips"], injected["clips"]) and np.array_equal(again["types"], injected["types"])
