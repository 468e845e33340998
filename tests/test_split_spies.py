"""Spies on the science: training, detector calibration and the diffusion classifier each see only
the runs they may see (the classical decoders have their own spy in test_decoding.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modalmerge.config import validate_config
from modalmerge.data.dataset import PreparedData
from modalmerge.stages import anomalies as anomaly_stage
from modalmerge.stages import decode as decode_stage
from modalmerge.stages import train as train_stage
from test_training import outputs, tiny_config


class VolumeIndex:
    """Which split each volume of the prepared data belongs to, found by its bytes."""

    def __init__(self, data: PreparedData):
        self.train = {v.tobytes() for v in data.X[~data.is_test]}
        self.test = {v.tobytes() for v in data.X[data.is_test]}
        assert not self.train & self.test  # every volume is unique, so bytes identify the split

    def splits_of(self, clips: np.ndarray) -> set[str]:
        frames = np.asarray(clips, np.float32).reshape(-1, *clips.shape[2:])
        return {"train" if f.tobytes() in self.train else "test" if f.tobytes() in self.test else "other"
                for f in frames}


@pytest.fixture(scope="module")
def data(prepared_slice) -> PreparedData:
    return PreparedData.load(prepared_slice["volumes"])


@pytest.fixture(scope="module")
def index(data) -> VolumeIndex:
    return VolumeIndex(data)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, prepared_slice) -> str:
    out = outputs(tmp_path_factory.mktemp("spy_model"))
    train_stage.train_subject(prepared_slice["volumes"], prepared_slice["split"], tiny_config(steps=2), out,
                              threads=2, progress=False)
    return out["model"]


def test_the_trainer_is_given_training_run_clips_only(tmp_path, prepared_slice, index, monkeypatch):
    seen = {}

    class SpyTrainer(train_stage.Trainer):
        def __init__(self, diffusion, clips, clip_labels, *args, **kwargs):
            seen["clips"] = clips
            super().__init__(diffusion, clips, clip_labels, *args, **kwargs)

    monkeypatch.setattr(train_stage, "Trainer", SpyTrainer)
    train_stage.train_subject(prepared_slice["volumes"], prepared_slice["split"], tiny_config(steps=1),
                              outputs(tmp_path), threads=2, progress=False)
    assert index.splits_of(seen["clips"]) == {"train"}


def test_every_detector_is_calibrated_on_training_run_clips_only(tmp_path, prepared_slice, index, tiny_model, monkeypatch):
    fitted = []

    def spy(cls):
        class Spy(cls):
            def fit(self, clips, design=None):
                fitted.append((cls.__name__, clips))
                return super().fit(clips, design)
        Spy.__name__ = cls.__name__
        return Spy

    originals = anomaly_stage.classical_detectors
    monkeypatch.setattr(anomaly_stage, "classical_detectors",
                        lambda mask, seed=0, ridge=16.0: {name: spy(type(d))(**d.get_params())
                                                          for name, d in originals(mask, seed, ridge).items()})
    monkeypatch.setattr(anomaly_stage, "DiffusionDetector", spy(anomaly_stage.DiffusionDetector))
    config = validate_config({"anomalies": {"strengths": {"blob": [3.0]}, "default_strengths": {"blob": 3.0},
                                            "diffusion": {"steps": 1, "n_draws": 1, "calibration_clips": 4}}})["anomalies"]
    config["strengths"] = {"blob": [3.0]}
    config["default_strengths"] = {"blob": 3.0}
    injected = tmp_path / "injected.npz"
    anomaly_stage.inject_subject(prepared_slice["volumes"], config, {"npz": injected, "examples": tmp_path / "e.nii.gz",
                                                                      "examples_mask": tmp_path / "m.nii.gz"}, clip_length=4)
    out = {key: tmp_path / name for key, name in [("json", "auc.json"), ("table", "t.tsv"), ("roc", "r.npz"),
                                                  ("figure_roc", "a.png"), ("figure_strength", "b.png"),
                                                  ("figure_examples", "c.png")]}
    anomaly_stage.score_subject(injected, prepared_slice["volumes"], tiny_model, config, out, precision="bfloat16")
    assert json.loads(out["json"].read_text())["detectors"]["diffusion"]["inference_precision"] == "bfloat16"
    assert len(fitted) == 11  # nine classical detectors, the diffusion detector and its untrained control
    for name, clips in fitted:
        assert index.splits_of(clips) == {"train"}, name


def test_the_diffusion_classifier_scores_held_out_blocks_only(prepared_slice, index, tiny_model, monkeypatch):
    from modalmerge.analysis import diffusion_decoding
    scored = []
    original = diffusion_decoding.DiffusionClassifier.pair_errors

    def spy(self, clips, design, target, **options):
        scored.append(clips)
        return original(self, clips, design, target, **options)

    monkeypatch.setattr(diffusion_decoding.DiffusionClassifier, "pair_errors", spy)
    monkeypatch.setattr(decode_stage, "encoder_probe_decoding", lambda *a, **k: {"accuracy": 0.0})
    config = validate_config({"decode": {"n_permutations": 1, "nilearn_decoder": False, "diffusion_pairs": 1}})["decode"]
    monkeypatch.setattr(decode_stage, "classical_decoders", lambda: {})
    monkeypatch.setattr(decode_stage, "heldout_split_decoding", lambda *a, **k: {"accuracy": 0.0})
    monkeypatch.setattr(decode_stage, "leave_one_run_out", lambda *a, **k: {})
    monkeypatch.setattr(decode_stage, "paired_tests", lambda *a, **k: {})  # the classical decoders are stubbed out
    results, _ = decode_stage.decode_subject(prepared_slice["volumes"], tiny_model, None, config, precision="bfloat16")
    assert results["diffusion_classifier"]["inference_precision"] == "bfloat16"
    assert len(scored) == 1 and len(scored[0]) == 24  # 8 category blocks in each of the 3 held-out runs
    assert index.splits_of(scored[0]) == {"test"}
    assert results["diffusion_classifier"]["test_runs"] == [10, 11, 12]
