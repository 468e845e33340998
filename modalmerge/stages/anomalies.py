"""Stage runners of inject_synthetic_anomalies and score_auc: read inputs, call the analysis, write
outputs atomically, draw figures."""

from __future__ import annotations

import json
import logging
import time

import nibabel as nib
import numpy as np
import torch

from ..analysis.anomalies import inject_anomalies
from ..analysis.anomaly_metrics import evaluate_detector
from ..analysis.detectors import classical_detectors
from ..analysis.diffusion_detector import DiffusionDetector, untrained_control
from ..atomic import atomic_file
from ..data.clips import make_clips
from ..data.dataset import PreparedData
from ..diffusion.checkpoints import load_diffusion
from ..runtime import choose_device, inference_precision, model_autocast, usable_threads
from .figures import plot_anomaly_examples, plot_auroc_vs_strength, plot_roc_curves

log = logging.getLogger("modalmerge")


def score_subject(injected_path, volumes_path, checkpoint_path, config: dict, out: dict, device: str = "cpu",
                  threads: int = 1, precision: str = "float32") -> dict:
    """score_auc for one subject; ``out`` keys: ``json`` (auc.json), ``table`` (TSV), ``roc`` (NPZ),
    ``figure_roc``, ``figure_strength``, ``figure_examples``. The diffusion detector's forward passes
    run in ``precision`` (:func:`~modalmerge.runtime.inference_precision`)."""
    torch.set_num_threads(usable_threads(threads))
    device = choose_device(device)
    precision = inference_precision(device, precision)
    with np.load(injected_path) as npz:
        injected = {k: npz[k] for k in npz.files}
    data = PreparedData.load(volumes_path)
    # a missing or broken checkpoint fails here, before the classical detectors' work
    diffusion = None if checkpoint_path is None else load_diffusion(checkpoint_path, device)[0]
    defaults = config["default_strengths"]
    results, diffusion_maps = score_detectors(injected, data, diffusion, config, device, precision)
    summary = {"default_strengths": defaults, "strength_unit": "voxel temporal std (z units); motion: voxels; dropout: fraction of signal removed",
               "voxel_fp_rate": config["voxel_fp_rate"], "seed": int(injected["seed"]),
               "n_normal_clips": int((injected["types"] == "none").sum()), "test_runs": data.test_runs,
               "detectors": results}
    with atomic_file(out["json"]) as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    rows = ["detector\ttype\tstrength\tauroc\tauprc"]
    for name, entry in results.items():
        for kind, by in entry["by_strength"].items():
            for strength, metrics in by.items():
                rows.append(f"{name}\t{kind}\t{strength}\t{metrics['auroc']:.4f}\t{metrics['auprc']:.4f}")
    with atomic_file(out["table"]) as tmp:
        tmp.write_text("\n".join(rows) + "\n")
    with atomic_file(out["roc"]) as tmp:
        np.savez_compressed(tmp, **{f"{n}_fpr": np.array(e["roc"]["fpr"]) for n, e in results.items()},
                            **{f"{n}_tpr": np.array(e["roc"]["tpr"]) for n, e in results.items()})
    with atomic_file(out["figure_roc"]) as tmp:
        plot_roc_curves(results, tmp)
    with atomic_file(out["figure_strength"]) as tmp:
        plot_auroc_vs_strength(results, tmp)
    with atomic_file(out["figure_examples"]) as tmp:
        plot_anomaly_examples(injected, data.mask, diffusion_maps, defaults, tmp)
    return {name: round(entry["auroc"], 3) for name, entry in results.items()}


UNTRAINED_NOTE = ("untrained_diffusion: the diffusion detector with the same settings, noise draws and calibration clips, "
                  "on the model before training (the denoiser's output is zero-initialised, so it predicts 0): a "
                  "training-free baseline, what the detector's steps do without any knowledge of the data. What "
                  "training adds is diffusion minus untrained_diffusion.")


def workflow_diffusion_detector(mask: np.ndarray, diffusion, config: dict) -> DiffusionDetector:
    """The diffusion detector with the settings of ``anomalies.diffusion`` (``config`` = ``anomalies``)."""
    cfg = config["diffusion"]
    return DiffusionDetector(mask, diffusion, cfg["t_start"], cfg["steps"], cfg["n_draws"], seed=config["seed"])


def calibration_clips(n_train_clips: int, config: dict) -> np.ndarray:
    """Which training-run clips standardise the diffusion detector: ``anomalies.diffusion.calibration_clips``
    of them, drawn with ``anomalies.seed``."""
    n = min(config["diffusion"]["calibration_clips"], n_train_clips)
    return np.random.default_rng(config["seed"]).choice(n_train_clips, n, replace=False)


def detector_inputs(injected: dict, data: PreparedData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train_clips, train_labels, design)``: the clean training-run clips every detector is fitted
    on (non-overlapping, the injected clips' length), their labels, and the design labels of each
    injected clip."""
    clip_length = int(injected["clip_length"])
    train_clips, train_labels, _, _ = make_clips(data.X, data.label_ids, data.runs, data.train_runs, clip_length, stride=clip_length)
    starts = injected["clip_starts"]
    if data.is_test[starts].sum() != len(starts):
        raise RuntimeError("an injected clip comes from a training run")  # guards the split
    return train_clips, train_labels, np.stack([data.label_ids[s:s + clip_length] for s in starts])


def fit_and_score_diffusion(detector: DiffusionDetector, inputs: tuple, injected: dict, mask: np.ndarray,
                            calibration: np.ndarray, config: dict) -> tuple[dict, np.ndarray]:
    """Calibrate a diffusion detector on the training-run clips of ``inputs`` (:func:`detector_inputs`)
    that ``calibration`` picks, score the injected clips and evaluate it: ``(its auc.json entry, its maps)``."""
    train_clips, train_labels, design = inputs
    detector.fit(train_clips[calibration], train_labels[calibration])
    maps = detector.score_maps(injected["clips"], design)
    scores = detector.decision_function(injected["clips"], design, maps=maps)
    return evaluate_detector(scores, maps, injected, mask, config["default_strengths"], config["voxel_fp_rate"]), maps


def score_detectors(injected: dict, data: PreparedData, diffusion, config: dict, device, precision: str) -> tuple[dict, np.ndarray | None]:
    """Fit every classical detector (and the diffusion detector and its untrained control, when
    ``diffusion`` is a trained model) on clean clips of the training runs, score the injected clips of
    the held-out runs, and evaluate each at ``config["default_strengths"]``: ``(results by detector,
    the diffusion detector's maps)``."""
    inputs = detector_inputs(injected, data)
    train_clips = inputs[0]
    defaults = config["default_strengths"]
    results, timings = {}, {}
    for name, detector in classical_detectors(data.mask, config["seed"], config["ridge_whitened_lambda"]).items():
        started = time.perf_counter()
        detector.fit(train_clips)
        maps = detector.score_maps(injected["clips"])
        scores = detector.decision_function(injected["clips"], maps=maps)
        results[name] = evaluate_detector(scores, maps, injected, data.mask, defaults, config["voxel_fp_rate"])
        timings[name] = time.perf_counter() - started
        log.info("%s: AUROC %.3f", name, results[name]["auroc"])
    diffusion_maps = None
    if diffusion is not None:
        calibration = calibration_clips(len(train_clips), config)
        started = time.perf_counter()
        with model_autocast(device, precision):
            results["diffusion"], diffusion_maps = fit_and_score_diffusion(
                workflow_diffusion_detector(data.mask, diffusion, config), inputs, injected, data.mask, calibration, config)
        results["diffusion"]["inference_precision"] = precision
        timings["diffusion"] = time.perf_counter() - started
        log.info("diffusion: AUROC %.3f", results["diffusion"]["auroc"])
        started = time.perf_counter()
        results["untrained_diffusion"], _ = fit_and_score_diffusion(
            workflow_diffusion_detector(data.mask, untrained_control(diffusion), config), inputs, injected, data.mask, calibration,
            config)
        results["untrained_diffusion"]["note"] = UNTRAINED_NOTE
        results["diffusion"]["auroc_minus_untrained"] = results["diffusion"]["auroc"] - results["untrained_diffusion"]["auroc"]
        timings["untrained_diffusion"] = time.perf_counter() - started
        log.info("untrained_diffusion: AUROC %.3f", results["untrained_diffusion"]["auroc"])
    for name in results:
        results[name]["runtime_s"] = timings[name]
    return results, diffusion_maps


def inject_subject(volumes_path, config: dict, out: dict, clip_length: int) -> dict:
    """inject_synthetic_anomalies for one subject, clips of the model's ``clip_length``;
    ``out`` keys: ``npz``, ``examples``, ``examples_mask``."""
    data = PreparedData.load(volumes_path, with_raw=True)
    strengths = config["strengths"]
    for kind, default in config["default_strengths"].items():
        if kind in strengths and default not in strengths[kind]:
            strengths[kind] = sorted(strengths[kind] + [default])
    injected = inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, clip_length, strengths,
                                config["seed"], config["blob_sigma"], config["radius"], config["duration"])
    with atomic_file(out["npz"]) as tmp:
        np.savez_compressed(tmp, **injected)
    # one example frame per type at its default strength, with its truth mask, in source space
    frames, masks = [], []
    for kind, default in config["default_strengths"].items():
        index = np.flatnonzero((injected["types"] == kind) & (injected["strengths"] == default))
        if len(index):
            clip_truth = injected["masks"][index[0]]
            frame = int(clip_truth.reshape(len(clip_truth), -1).sum(1).argmax())
            frames.append(injected["clips"][index[0], frame])
            masks.append(clip_truth[frame].astype(np.float32))
    with atomic_file(out["examples"]) as tmp:
        nib.save(data.to_source_space(np.stack(frames)), tmp)
    with atomic_file(out["examples_mask"]) as tmp:
        nib.save(data.to_source_space(np.stack(masks)), tmp)
    return {"n_clips": int(len(injected["clips"])), "n_anomalous": int(injected["labels"].sum())}
