"""mask-and-normalize: labels, shapes, per-run normalisation and a split that never leaks."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from modalmerge import HAXBY_CATEGORIES
from modalmerge.errors import ModalMergeInputError
from modalmerge.data.dataset import PreparedData, RunSplit
from modalmerge.data.preprocessing import label_volumes
from modalmerge.stages.prepare import prepare_subject

from conftest import prep_outputs


def test_label_volumes_with_and_without_shift():
    events = pd.DataFrame({"onset": [5.0], "duration": [5.0], "trial_type": ["cat"]})
    assert label_volumes(events, 6, 2.5, 0).tolist() == ["rest", "rest", "cat", "cat", "rest", "rest"]
    assert label_volumes(events, 6, 2.5, 2).tolist() == ["rest", "rest", "rest", "rest", "cat", "cat"]


def test_prepared_slice_data(prepared_slice):
    data = PreparedData.load(prepared_slice["volumes"])
    assert data.X.shape == (12 * 121, 37, 19, 1)
    assert data.mask.sum() == 530
    counts = pd.Series(data.labels).value_counts()
    assert all(counts[c] == 108 for c in HAXBY_CATEGORIES)  # 9 volumes x 12 runs
    assert counts["rest"] == 12 * 121 - 8 * 108
    for run in range(1, 13):
        in_run = data.X[data.runs == run][:, data.mask]
        assert in_run.shape[0] == 121
        assert np.allclose(in_run.mean(axis=0), 0, atol=1e-4)
        assert np.allclose(in_run.std(axis=0, ddof=1), 1, atol=1e-3)
        assert set(data.labels[data.runs == run]) == set(HAXBY_CATEGORIES) | {"rest"}
    assert np.all(data.X[:, ~data.mask] == 0)


def test_split_never_leaks(prepared_slice):
    data = PreparedData.load(prepared_slice["volumes"])
    split = RunSplit.read(prepared_slice["split"])
    assert split.test_runs == [10, 11, 12] and split.train_runs == list(range(1, 10))
    assert set(data.runs[data.is_test]) == {10, 11, 12}
    assert not set(data.runs[~data.is_test]) & set(split.test_runs)
    table = pd.read_csv(prepared_slice["table"], sep="\t")
    assert (table["split"] == np.where(data.is_test, "test", "train")).all()


def test_outputs_stay_in_source_space(prepared_slice, embedded_dataset):
    normalized = nib.load(prepared_slice["bold"])
    source = nib.load(embedded_dataset / "func/run-01_bold.nii.gz")
    assert normalized.shape == (40, 20, 1, 12 * 121)
    assert np.allclose(normalized.affine, source.affine)
    data = PreparedData.load(prepared_slice["volumes"])
    back = data.to_source_space(data.X[:5])
    assert np.allclose(np.asarray(back.dataobj), np.asarray(normalized.dataobj)[..., :5], atol=1e-5)


def test_kfold_split_covers_every_run_once():
    split = RunSplit.from_config(list(range(1, 13)), [10, 11, 12], n_folds=4)
    held = sorted(r for fold in split.folds for r in fold["test_runs"])
    assert held == list(range(1, 13))
    for fold in split.folds:
        assert not set(fold["test_runs"]) & set(fold["train_runs"])


@pytest.mark.parametrize("test_runs,message", [([13], "does not have"), (list(range(1, 13)), "both must be non-empty")])
def test_bad_split_is_reported(test_runs, message):
    with pytest.raises(ModalMergeInputError, match=message):
        RunSplit.from_config(list(range(1, 13)), test_runs)


def test_constant_voxels_are_an_error_or_dropped(tmp_path, tiny_custom_study):
    from modalmerge.data.sources import fetch_dataset
    bold_path = tiny_custom_study["custom"]["bold"].format(run=2)
    img = nib.load(bold_path)
    data = img.get_fdata().astype(np.float32)
    data[0, 0, 0, :] = 7.0
    nib.save(nib.Nifti1Image(data, img.affine), bold_path)
    dataset = fetch_dataset(tiny_custom_study, "s01", tmp_path / "data")
    out = prep_outputs(tmp_path / "prep")
    (tmp_path / "prep").mkdir()
    with pytest.raises(ModalMergeInputError, match="1 voxel.*constant over run 2"):
        prepare_subject(dataset, out, mask="custom", test_runs=[3])
    assert not any((tmp_path / "prep").iterdir())
    summary = prepare_subject(dataset, out, mask="custom", test_runs=[3], drop_constant_voxels=True)
    assert summary["n_voxels"] == 4 * 5 * 3 - 1
    assert json.loads(open(out["split"]).read())["test_runs"] == [3]


def test_unknown_mask_name_lists_the_available_ones(tmp_path, embedded_dataset):
    with pytest.raises(ModalMergeInputError, match=r"Mask 'vt' is not available.*Available: \['nonzero'\]"):
        prepare_subject(embedded_dataset, prep_outputs(tmp_path), mask="vt")


def test_excluded_runs_are_left_out_of_everything_and_recorded(tmp_path, embedded_dataset):
    """A development split: run 9 held out, the real test runs 10-12 excluded from every stage."""
    out = prep_outputs(tmp_path)
    prepare_subject(embedded_dataset, out, test_runs=[9], exclude_runs=[10, 11, 12])
    split = RunSplit.read(out["split"])
    assert split.test_runs == [9] and split.train_runs == list(range(1, 9)) and split.excluded_runs == [10, 11, 12]
    data = PreparedData.load(out["volumes"])
    assert set(np.unique(data.runs)) == set(range(1, 10)) and set(np.unique(data.runs[data.is_test])) == {9}


@pytest.mark.parametrize("test_runs, exclude, message", [([10], [10, 11], "share runs"), ([9], [13], "does not have"),
                                                         ([10], [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12], "both must be non-empty")])
def test_a_wrong_exclusion_is_refused_with_the_key(tmp_path, embedded_dataset, test_runs, exclude, message):
    out = prep_outputs(tmp_path)
    with pytest.raises(ModalMergeInputError, match=message):
        prepare_subject(embedded_dataset, out, test_runs=test_runs, exclude_runs=exclude)
    assert not any(os.path.exists(path) for path in out.values())
