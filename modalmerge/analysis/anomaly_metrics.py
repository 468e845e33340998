"""score-AUC metrics: clip- and voxel-level metrics of one detector by anomaly type and strength."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

SPATIAL_TYPES = ("blob", "dropout", "noise_burst", "motion")


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


def pooled_at_default(injected: dict, default_strengths: dict) -> np.ndarray:
    """The clips of the pooled metrics: every clean clip and every anomaly at its type's default strength."""
    types, strengths = injected["types"], injected["strengths"]
    return (types == "none") | np.array([default_strengths.get(k) == s for k, s in zip(types, strengths)])


def evaluate_detector(scores, maps, injected: dict, mask, default_strengths: dict, fp_rate: float) -> dict:
    """All metrics of one detector: pooled at the default strengths, by type, by type and strength."""
    types, strengths, labels = injected["types"], injected["strengths"], injected["labels"]
    normal = types == "none"
    at_default = pooled_at_default(injected, default_strengths)
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
