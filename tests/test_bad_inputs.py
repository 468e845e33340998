"""Bad input, case by case: every one gets a clear error (or a loud warning where the data may be
right) that names the file or config key, says what to do, and leaves no partial output.

The study is the tiny custom one of conftest (3 runs of 20 volumes on a 4x5x3 grid, TR 2 s,
files run-{run}_bold.nii.gz / run-{run}_events.tsv / mask.nii.gz); each case damages one thing.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from modalmerge.config import validate_config
from modalmerge.data.layout import Dataset
from modalmerge.data.sources import fetch_dataset
from modalmerge.diffusion.checkpoints import load_diffusion
from modalmerge.errors import ModalMergeInputError
from modalmerge.stages.prepare import prepare_subject
from modalmerge.training.guard import CheckpointLock

from conftest import prep_outputs, write_tiny_run


def paths(study: dict, run: int = 2) -> dict:
    custom = study["custom"]
    return {"bold": Path(custom["bold"].format(run=run)), "events": Path(custom["events"].format(run=run)),
            "mask": Path(custom["mask"]), "folder": Path(custom["mask"]).parent}


def rewrite_bold(path: Path, change=None, dtype=np.float32, tr: float | None = None, unit: str = "sec", affine=None):
    img = nib.load(path)
    data = np.asarray(img.dataobj, dtype=np.float64)
    data = change(data) if change else data
    out = nib.Nifti1Image(data.astype(dtype), img.affine if affine is None else affine)
    if tr is not None:
        out.header.set_zooms(out.header.get_zooms()[:3] + (tr,))
        out.header.set_xyzt_units("mm", unit)
    nib.save(out, path)


def write_events(path: Path, rows: str) -> None:
    path.write_text("onset\tduration\ttrial_type\n" + rows)


# ---------------------------------------------------------------- damages of the fetch stage (custom data)
def tr_disagrees_with_config(study):
    for run in (1, 2, 3):
        rewrite_bold(paths(study, run)["bold"], tr=2.5)


def one_run_has_another_tr(study):
    rewrite_bold(paths(study, 2)["bold"], tr=3.0)


def tr_in_milliseconds_disagrees(study):
    rewrite_bold(paths(study, 1)["bold"], tr=2500.0, unit="msec")


def negative_duration(study):
    write_events(paths(study)["events"], "2\t-4\tface\n20\t10\thouse\n")


def na_onset(study):
    write_events(paths(study)["events"], "n/a\t10\tface\n20\t10\thouse\n")


def text_onset(study):
    write_events(paths(study)["events"], "two\t10\tface\n")


def na_duration(study):
    write_events(paths(study)["events"], "2\tn/a\tface\n")


def empty_events_file(study):
    paths(study)["events"].write_text("")


def missing_trial_type(study):
    paths(study)["events"].write_text("onset\tduration\n2\t10\n")


def unknown_category(study):
    write_events(paths(study)["events"], "2\t10\tbanana\n")


def event_outside_run(study):
    write_events(paths(study)["events"], "36\t10\tface\n")


def duplicate_runs(study):
    study["custom"]["runs"] = [1, 2, 2, 3]


def missing_bold(study):
    paths(study)["bold"].unlink()


def zero_padded_names(study):
    folder = paths(study)["folder"]
    for run in (1, 2, 3):
        for kind in ("bold.nii.gz", "events.tsv"):
            (folder / f"run-{run}_{kind}").rename(folder / f"run-{run:02d}_{kind}")


def missing_events(study):
    paths(study)["events"].unlink()


def missing_mask(study):
    paths(study)["mask"].unlink()


def run_on_another_grid(study):
    write_tiny_run(paths(study)["folder"], 2, shape=(4, 6, 3))


def run_with_shifted_affine(study):
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[0, 3] = 5.0  # 5 mm off the other runs
    rewrite_bold(paths(study)["bold"], affine=affine)


def mask_on_another_grid(study):
    nib.save(nib.Nifti1Image(np.ones((4, 5, 4), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0])), paths(study)["mask"])


def bold_is_3d(study):
    img = nib.load(paths(study)["bold"])
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine), paths(study)["bold"])


def bold_has_nan(study):
    rewrite_bold(paths(study)["bold"], lambda d: np.where(np.indices(d.shape)[3] == 3, np.nan, d))


def bold_has_extreme_values(study):
    rewrite_bold(paths(study)["bold"], lambda d: np.where(np.indices(d.shape)[0] == 1, 1e30, d))


def bold_truncated(study):
    raw = paths(study)["bold"].read_bytes()
    paths(study)["bold"].write_bytes(raw[: len(raw) // 2])


def bold_not_gzip(study):
    paths(study)["bold"].write_bytes(gzip.compress(b"not a nifti at all"))


def custom_block_incomplete(study):
    del study["custom"]["tr"]


FETCH_CASES = [
    # (damage, words the message must hold: what is wrong + which file/key + what to do)
    (tr_disagrees_with_config, ["data.custom.tr is 2 s", "run-1_bold.nii.gz says 2.5 s", "Set data.custom.tr: 2.5"]),
    (one_run_has_another_tr, ["run-2_bold.nii.gz says 3 s", "data.custom.tr"]),
    (tr_in_milliseconds_disagrees, ["run-1_bold.nii.gz says 2.5 s", "Set data.custom.tr: 2.5"]),
    (negative_duration, ["run-2_events.tsv", "negative duration", "fix the events file"]),
    (na_onset, ["run-2_events.tsv", "onset value(s) are not numbers", "'n/a'", "remove the row or give the value"]),
    (text_onset, ["run-2_events.tsv", "'two'", "numeric onset"]),
    (na_duration, ["run-2_events.tsv", "duration value(s) are not numbers"]),
    (empty_events_file, ["run-2_events.tsv", "Cannot read events file", "columns onset, duration, trial_type"]),
    (missing_trial_type, ["run-2_events.tsv", "lacks column(s) ['trial_type']", "BIDS-style columns"]),
    (unknown_category, ["run-2_events.tsv", "unknown categories ['banana']", "data.categories"]),
    (event_outside_run, ["run-2_events.tsv", "outside the run", "Check the TR (data.custom.tr)"]),
    (duplicate_runs, ["data.custom.runs", "run(s) [2] more than once", "list each run once"]),
    (missing_bold, ["run-2_bold.nii.gz", "data.custom.bold", "File not found"]),
    (zero_padded_names, ["run-1_bold.nii.gz", "zero-padded", "{run:02d}"]),
    (missing_events, ["run-2_events.tsv", "data.custom.events"]),
    (missing_mask, ["mask.nii.gz", "file not found", "config.yaml"]),
    (run_on_another_grid, ["run-2_bold.nii.gz", "does not match the grid", "Expected shape (4, 5, 3)"]),
    (run_with_shifted_affine, ["run-2_bold.nii.gz", "different affine", "resample"]),
    (mask_on_another_grid, ["mask", "Expected shape (4, 5, 3)", "resample_to_img"]),
    (bold_is_3d, ["run-2_bold.nii.gz", "wrong dimensionality", "4D"]),
    (bold_has_nan, ["run-2_bold.nii.gz", "NaN or infinite", "exclude those voxels"]),
    (bold_has_extreme_values, ["run-2_bold.nii.gz", "magnitude up to 1e+30", "scl_slope"]),
    (bold_truncated, ["run-2_bold.nii.gz", "corrupt or truncated", "fix its source"]),
    (bold_not_gzip, ["run-2_bold.nii.gz", "Cannot read BOLD"]),
    (custom_block_incomplete, ["data.custom lacks ['tr']", "See config.yaml"]),
]


@pytest.mark.parametrize("damage,words", FETCH_CASES, ids=[case[0].__name__ for case in FETCH_CASES])
def test_fetch_refuses_bad_custom_data_by_name(tmp_path, tiny_custom_study, damage, words):
    damage(tiny_custom_study)
    dest = tmp_path / "results" / "data" / "s01"
    with pytest.raises(ModalMergeInputError) as err:
        fetch_dataset(tiny_custom_study, "s01", dest)
    message = str(err.value)
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in: {message}"
    assert not dest.exists() and not any((tmp_path / "results").rglob("*"))  # nothing partial


# ---------------------------------------------------------------- warnings where the data may be right
def header_only_events(study):
    write_events(paths(study)["events"], "")


def int16_at_its_limit(study):
    rewrite_bold(paths(study)["bold"], lambda d: np.where(np.indices(d.shape)[3] == 5, 32767, d), dtype=np.int16)


@pytest.mark.parametrize("damage,words", [
    (header_only_events, ["run-2_events.tsv", "no events", "labelled rest"]),
    (int16_at_its_limit, ["run-2_bold.nii.gz", "int16", "overflowed or wrapped", "float32"]),
], ids=["header_only_events", "int16_at_its_limit"])
def test_suspicious_but_possible_data_gets_a_loud_warning(tmp_path, tiny_custom_study, damage, words):
    damage(tiny_custom_study)
    with pytest.warns(UserWarning) as record:
        fetch_dataset(tiny_custom_study, "s01", tmp_path / "out")
    message = " ".join(str(w.message) for w in record)
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_matching_header_tr_and_unlabelled_headers_pass(tmp_path, tiny_custom_study):
    for run in (1, 2, 3):
        rewrite_bold(paths(tiny_custom_study, run)["bold"], tr=2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Dataset.read(fetch_dataset(tiny_custom_study, "s01", tmp_path / "out")).tr == 2.0


# ---------------------------------------------------------------- damages found by mask-and-normalize
def prepare(study, tmp_path, **options):
    dataset = fetch_dataset(study, "s01", tmp_path / "data")
    out = prep_outputs(tmp_path / "prep")
    return out, lambda: prepare_subject(dataset, out, **{"mask": "custom", "test_runs": [3], **options})


def empty_mask(study):
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 3), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0])), paths(study)["mask"])


def constant_voxel(study):
    rewrite_bold(paths(study)["bold"], lambda d: np.where((np.indices(d.shape)[0] == 0) & (np.indices(d.shape)[1] == 0)
                                                          & (np.indices(d.shape)[2] == 0), 100.0, d))


PREP_CASES = [
    (empty_mask, {}, ["mask 'custom'", "custom.nii.gz", "is empty", "prep.mask", "data.custom.mask"]),
    (constant_voxel, {}, ["constant over run 2", "prep.mask", "prep.drop_constant_voxels"]),
    (None, {"test_runs": [7]}, ["prep.split.test_runs", "[7]", "runs: [1, 2, 3]"]),
    (None, {"test_runs": [1, 2, 3]}, ["prep.split.test_runs", "both must be non-empty"]),
    (None, {"n_folds": 9}, ["prep.split.n_folds", "between 2 and 3"]),
    (None, {"mask": "vt"}, ["Mask 'vt' is not available", "Set prep.mask"]),
]


@pytest.mark.parametrize("damage,options,words", PREP_CASES, ids=["empty_mask", "constant_voxel", "unknown_test_run",
                                                                 "no_training_run", "too_many_folds", "unknown_mask"])
def test_mask_and_normalize_refuses_bad_input_by_name(tmp_path, tiny_custom_study, damage, options, words):
    if damage:
        damage(tiny_custom_study)
    out, run = prepare(tiny_custom_study, tmp_path, **options)
    with pytest.raises(ModalMergeInputError) as err:
        run()
    for word in words:
        assert word in str(err.value), f"{word!r} not in: {err.value}"
    assert not (tmp_path / "prep").exists() or not any((tmp_path / "prep").iterdir())


# ---------------------------------------------------------------- configuration and checkpoints
@pytest.mark.parametrize("bad,words", [
    ({"train": {"lerning_rate": 1e-3}}, ["'train'", "unknown key 'lerning_rate'", "did you mean 'learning_rate'"]),
    ({"sample": {"steps": "fifty"}}, ["'sample.steps'", "is not of type 'integer'"]),
    ({"anomalies": {"strengths": {"blob": [1], "glitch": [1]}}}, ["'anomalies.strengths'", "unknown key 'glitch'"]),
], ids=["typo", "wrong_type", "unknown_anomaly_type"])
def test_config_errors_name_the_key_and_stay_short(bad, words):
    with pytest.raises(ModalMergeInputError) as err:
        validate_config(bad)
    for word in words:
        assert word in str(err.value)
    assert len(str(err.value).splitlines()) < 6  # not the whole schema


def test_truncated_checkpoint_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModalMergeInputError, match=r"Cannot load checkpoint .*model.pt.*Delete it and train again"):
        load_diffusion(path)


def test_missing_checkpoint_says_which_stage_makes_it(tmp_path):
    with pytest.raises(ModalMergeInputError, match=r"model.pt not found: run the train_diffusion stage first"):
        load_diffusion(tmp_path / "model.pt")


def test_a_second_trainer_on_one_checkpoint_is_refused_with_the_holders_pid(tmp_path):
    checkpoint = tmp_path / "ckpt" / "last.pt"
    with CheckpointLock(checkpoint):
        with pytest.raises(ModalMergeInputError, match=r"Another training process \(PID \d+ on .*\) is writing"):
            with CheckpointLock(checkpoint):
                pass
    with CheckpointLock(checkpoint):  # released: the next trainer may start
        pass
    assert not checkpoint.parent.exists()  # the lock leaves nothing behind


def test_events_table_read_from_disk_keeps_its_rows(tmp_path, tiny_custom_study):
    """The strict reader does not drop or relabel anything of a good table (the control case)."""
    dataset = Dataset.read(fetch_dataset(tiny_custom_study, "s01", tmp_path / "out"))
    events = dataset.events(2)
    assert events["trial_type"].tolist() == ["face", "house"] and events["onset"].tolist() == [2.0, 20.0]
    assert pd.api.types.is_float_dtype(events["duration"])


def truncated_checkpoint(path) -> str:
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:200])
    return str(path)


def test_score_auc_checks_the_checkpoint_before_the_classical_detectors(tmp_path, prepared_slice, monkeypatch):
    from modalmerge.config import validate_config as defaults
    from modalmerge.stages import anomalies as stage
    config = defaults({})["anomalies"]
    config["strengths"] = {"blob": [3.0]}
    config["default_strengths"] = {"blob": 3.0}
    injected = tmp_path / "injected.npz"
    stage.inject_subject(prepared_slice["volumes"], config, {"npz": injected, "examples": tmp_path / "e.nii.gz",
                                                             "examples_mask": tmp_path / "m.nii.gz"}, clip_length=8)
    monkeypatch.setattr(stage, "classical_detectors", lambda *a, **k: pytest.fail("classical detectors ran first"))
    out = {key: tmp_path / "out" / name for key, name in [("json", "auc.json"), ("table", "t.tsv"), ("roc", "r.npz"),
                                                          ("figure_roc", "a.png"), ("figure_strength", "b.png"),
                                                          ("figure_examples", "c.png")]}
    with pytest.raises(ModalMergeInputError, match="Cannot load checkpoint .*model.pt"):
        stage.score_subject(injected, prepared_slice["volumes"], truncated_checkpoint(tmp_path / "model.pt"), config, out)
    assert not (tmp_path / "out").exists()


def test_decode_checks_the_checkpoint_before_the_classical_decoders(tmp_path, prepared_slice, monkeypatch):
    from modalmerge.config import validate_config as defaults
    from modalmerge.stages import decode as stage
    monkeypatch.setattr(stage, "classical_decoders", lambda *a, **k: pytest.fail("classical decoders ran first"))
    with pytest.raises(ModalMergeInputError, match="Cannot load checkpoint .*model.pt"):
        stage.decode_subject(prepared_slice["volumes"], truncated_checkpoint(tmp_path / "model.pt"), None,
                             defaults({})["decode"])


@pytest.mark.parametrize("content, message", [
    ("not json", "is not an output of the decode_classical rule"),
    ('{"decoders": {}}', "is not an output of the decode_classical rule"),
    ('{"decoders": {"linear_svm": {}}, "timings_s": {}, "learning_curve": null}', "lacks the decoders"),
])
def test_decode_refuses_a_classical_file_that_is_not_decode_classicals(tmp_path, prepared_slice, content, message):
    """decode reads the classical decoders from decode_classical's file: a broken or foreign one is
    named, with what to do, before any decoder runs and before any output is written."""
    from modalmerge.config import validate_config as defaults
    from modalmerge.stages import decode as stage
    classical = tmp_path / "classical_decoders.json"
    classical.write_text(content)
    out = {key: tmp_path / "out" / name for key, name in [("json", "d.json"), ("confusion", "c.npz"), ("table", "t.tsv"),
                                                          ("figure", "a.png"), ("figure_confusion", "b.png")]}
    with pytest.raises(ModalMergeInputError, match=f"classical_decoders.json {message}.*decode_classical"):
        stage.decode_stage(prepared_slice["volumes"], None, None, defaults({})["decode"], out, classical_path=classical)
    assert not (tmp_path / "out").exists()


def test_decode_refuses_a_classical_file_without_held_out_predictions(tmp_path, prepared_slice):
    """A decode_classical file of an older version (block decoders without their held-out predictions,
    which the paired tests need) is refused with what to do, before any decoder runs."""
    import json
    from modalmerge.config import validate_config as defaults
    from modalmerge.stages import decode as stage
    config = defaults({})["decode"]
    names = [*stage.classical_decoders(), *stage.BLOCK_DECODERS, "nilearn_decoder"]
    classical = tmp_path / "classical_decoders.json"
    classical.write_text(json.dumps({"decoders": {name: {"accuracy": 0.5} for name in names}, "timings_s": {},
                                     "learning_curve": {}}))
    out = {key: tmp_path / "out" / name for key, name in [("json", "d.json"), ("confusion", "c.npz"), ("table", "t.tsv"),
                                                          ("figure", "a.png"), ("figure_confusion", "b.png")]}
    with pytest.raises(ModalMergeInputError, match="lacks the held-out predictions of .*linear_svm_block_averaged.*"
                                                   "forcerun decode_classical"):
        stage.decode_stage(prepared_slice["volumes"], None, None, config, out, classical_path=classical)
    assert not (tmp_path / "out").exists()


def test_the_ancestor_watch_names_a_launcher_that_is_gone():
    """The trainer's watch: alive while its parent runs, names the parent once it has exited."""
    import subprocess
    import sys
    from modalmerge.training.guard import AncestorWatch
    code = ("import time, sys; from modalmerge.training.guard import AncestorWatch; w = AncestorWatch(); "
            "print(w.gone(), flush=True); time.sleep(1.5); print(w.gone(), flush=True)")
    # a short-lived parent (a shell that starts the child in the background and exits)
    out = subprocess.run(["bash", "-c", f"{sys.executable} -c '{code}' & sleep 0.5"], capture_output=True, text=True)
    first, later = out.stdout.splitlines()  # the pipe stays open until the child ends, so both lines arrive
    assert first == "None" and later.startswith("PID ")
    assert AncestorWatch().gone() is None  # this test's own parents are alive
