"""score-AUC: every detector on the injected clips; clip- and voxel-level metrics by type and strength."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .anomaly_detectors import (DiffusionDetector, DVARSDetector, IsolationForestDetector, MahalanobisDetector,
                                PCADetector, VarianceDeficitDetector, ZScoreDetector)
from .atomic import atomic_file

log = logging.getLogger("modalmerge")
SPATIAL_TYPES = ("blob", "dropout", "noise_burst", "motion")


def classical_detectors(seed: int = 0) -> dict:
    return {
        "zscore_max": ZScoreDetector(0.0),
        "zscore_smoothed": ZScoreDetector(1.0),
        "zscore_global_mean": ZScoreDetector(0.0, reduce="mean"),
        "pca_reconstruction": PCADetector(20),
        "mahalanobis_ledoit_wolf": MahalanobisDetector(),
        "isolation_forest": IsolationForestDetector(seed),
        "dvars": DVARSDetector(),
        "variance_deficit": VarianceDeficitDetector(),
    }


def clip_metrics(scores: np.ndarray, labels: np.ndarray) -> dict:
    return {"auroc": float(roc_auc_score(labels, scores)), "auprc": float(average_precision_score(labels, scores)),
            "n_anomalous": int(labels.sum()), "n_normal": int((1 - labels).sum())}


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    denominator = prediction.sum() + truth.sum()
    return float(2 * (prediction & truth).sum() / denominator) if denominator else 1.0


def voxel_metrics(maps: np.ndarray, truth: np.ndarray, mask: np.ndarray, clean_threshold: float) -> dict:
    """Voxel AUPRC, Dice at the threshold set on clean clips, and the best Dice (optimistic)."""
    values, target = maps[:, :, mask].ravel(), truth[:, :, mask].ravel()
    if target.sum() == 0:
        return {}
    thresholds = np.quantile(values, np.linspace(0.5, 0.999, 40))
    return {"voxel_auprc": float(average_precision_score(target, values)),
            "voxel_prevalence": float(target.mean()),
            "dice_at_clean_threshold": dice(values > clean_threshold, target),
            "best_dice_optimistic": max(dice(values > t, target) for t in thresholds)}


def evaluate_detector(scores, maps, injected: dict, mask, default_strengths: dict, fp_rate: float) -> dict:
    """All metrics of one detector: pooled at the default strengths, by type, by type and strength."""
    types, strengths, labels = injected["types"], injected["strengths"], injected["labels"]
    normal = types == "none"
    at_default = normal | np.array([default_strengths.get(k) == s for k, s in zip(types, strengths)])
    entry = clip_metrics(scores[at_default], labels[at_default])
    fpr, tpr, _ = roc_curve(labels[at_default], scores[at_default])
    entry["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
    clean_threshold = float(np.quantile(maps[normal][:, :, mask], 1 - fp_rate)) if maps is not None else None
    entry["by_type"], entry["by_strength"] = {}, {}
    for kind in [k for k in default_strengths if (types == k).any()]:
        pick = normal | ((types == kind) & (strengths == default_strengths[kind]))
        entry["by_type"][kind] = clip_metrics(scores[pick], labels[pick])
        entry["by_type"][kind]["strength"] = default_strengths[kind]
        if maps is not None and kind in SPATIAL_TYPES:
            anomalous = (types == kind) & (strengths == default_strengths[kind])
            entry["by_type"][kind].update(voxel_metrics(maps[anomalous], injected["masks"][anomalous], mask, clean_threshold))
        entry["by_strength"][kind] = {}
        for strength in sorted(set(strengths[types == kind].tolist())):
            pick = normal | ((types == kind) & (strengths == strength))
            entry["by_strength"][kind][f"{strength:g}"] = clip_metrics(scores[pick], labels[pick])
    entry["voxel_threshold_from_clean_clips"] = clean_threshold
    return entry


def score_subject(injected_path, volumes_path, checkpoint_path, config: dict, out: dict, device: str = "cpu",
                  threads: int = 1) -> dict:
    """score_auc for one subject; ``out`` keys: ``json`` (auc.json), ``table`` (TSV), ``roc`` (NPZ),
    ``figure_roc``, ``figure_strength``, ``figure_examples``."""
    import torch

    from .figures import plot_anomaly_examples, plot_auroc_vs_strength, plot_roc_curves
    from .preprocessing import PreparedData
    from .training import choose_device, make_clips, usable_threads

    torch.set_num_threads(usable_threads(threads))
    with np.load(injected_path) as npz:
        injected = {k: npz[k] for k in npz.files}
    data = PreparedData.load(volumes_path)
    clip_length = int(injected["clip_length"])
    train_clips, train_labels, _, _ = make_clips(data.X, data.label_ids, data.runs, data.train_runs, clip_length, stride=clip_length)
    starts = injected["clip_starts"]
    design = np.stack([data.label_ids[s:s + clip_length] for s in starts])
    if data.is_test[starts].sum() != len(starts):
        raise RuntimeError("an injected clip comes from a training run")  # guards the split
    defaults = config["default_strengths"]
    detectors = classical_detectors(config["seed"])
    results, timings = {}, {}
    for name, detector in detectors.items():
        started = time.perf_counter()
        detector.fit(train_clips, data.mask)
        scores, maps = detector.score(injected["clips"])
        results[name] = evaluate_detector(scores, maps, injected, data.mask, defaults, config["voxel_fp_rate"])
        timings[name] = time.perf_counter() - started
        log.info("%s: AUROC %.3f", name, results[name]["auroc"])
    diffusion_maps = None
    if checkpoint_path is not None:
        from .sampling import load_diffusion
        diffusion, _ = load_diffusion(checkpoint_path, choose_device(device))
        started = time.perf_counter()
        cfg = config["diffusion"]
        detector = DiffusionDetector(diffusion, cfg["t_start"], cfg["steps"], cfg["n_draws"], seed=config["seed"])
        calibration = np.random.default_rng(config["seed"]).choice(len(train_clips), min(cfg["calibration_clips"], len(train_clips)), replace=False)
        detector.fit(train_clips[calibration], data.mask, train_labels[calibration])
        scores, diffusion_maps = detector.score(injected["clips"], design)
        results["diffusion"] = evaluate_detector(scores, diffusion_maps, injected, data.mask, defaults, config["voxel_fp_rate"])
        timings["diffusion"] = time.perf_counter() - started
        log.info("diffusion: AUROC %.3f", results["diffusion"]["auroc"])
    for name in results:
        results[name]["runtime_s"] = timings[name]
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


def inject_subject(volumes_path, config: dict, out: dict, clip_length: int) -> dict:
    """inject_synthetic_anomalies for one subject, clips of the model's ``clip_length``;
    ``out`` keys: ``npz``, ``examples``, ``examples_mask``."""
    import nibabel as nib

    from .anomalies import inject_anomalies
    from .preprocessing import PreparedData

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
