"""How finely do the development split and the test runs tell the diffusion detector from max-z?

    python bench/detector_resolution.py --dev DEV/seed-0 DEV/seed-1 DEV/seed-2 --test RUN/seed-0 RUN/seed-1 RUN/seed-2

On the development split (model trained on runs 1-8, anomalies injected into run 9) the workflow's
diffusion detector tied max-z (0.674 vs 0.667 pooled AUROC, bench/README.md section 15); on the test
runs it is 0.08 below (0.597 vs 0.678). This script recomputes both detectors' clip scores in each
folder (the workflow's settings from the folder's config; the test folders' pooled AUROC is checked
against their auc.json), and gives the paired difference AUROC(diffusion) - AUROC(max-z) with a
bootstrap interval over clips (clean and anomalous clips resampled apart, the same resample for both
detectors) per folder, and over the three seeds together. It measures; it chooses nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from detector_cost import development_inputs  # noqa: E402
from modalmerge.analysis.detectors import classical_detectors  # noqa: E402
from modalmerge.analysis.anomaly_metrics import pooled_at_default  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast  # noqa: E402
from modalmerge.stages.anomalies import calibration_clips, workflow_diffusion_detector  # noqa: E402


def pooled_scores(folder: Path, development: bool) -> dict:
    """Both detectors' clip scores at the default strengths (clean clips and every type pooled)."""
    config, injected, data, clips, labels, design = development_inputs(folder, development)
    cfg = config["anomalies"]
    at_default = pooled_at_default(injected, cfg["default_strengths"])
    device = torch.device("cpu")
    precision = inference_precision(device, config["train"].get("inference_precision", "auto"))
    diffusion, _ = load_diffusion(folder / "results/model/sub001/model.pt", device)
    detector = workflow_diffusion_detector(data.mask, diffusion, cfg)
    calibration = calibration_clips(len(clips), cfg)
    with model_autocast(device, precision):
        detector.fit(clips[calibration], labels[calibration])
        diffusion_scores = detector.decision_function(injected["clips"], design)
    maxz = classical_detectors(data.mask, 0)["zscore_max"].fit(clips)
    return {"labels": injected["labels"][at_default].astype(int), "diffusion": diffusion_scores[at_default],
            "zscore_max": maxz.decision_function(injected["clips"], design)[at_default]}


def paired_bootstrap(runs: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean over ``runs`` of AUROC(diffusion) - AUROC(max-z), and its bootstrap 95 % interval
    (clean and anomalous clips resampled apart, the same indices for both detectors and, since the
    seeds' models score the same injected clips, for every run: the clips are the sample)."""
    rng = np.random.default_rng(seed)
    labels = runs[0]["labels"]
    assert all(np.array_equal(r["labels"], labels) for r in runs), "the runs do not score the same clips"
    clean, bad = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    point = np.mean([roc_auc_score(r["labels"], r["diffusion"]) - roc_auc_score(r["labels"], r["zscore_max"]) for r in runs])
    draws = np.zeros(n_boot)
    for b in range(n_boot):
        pick = np.concatenate([rng.choice(clean, len(clean)), rng.choice(bad, len(bad))])
        diffs = []
        for r in runs:
            diffs.append(roc_auc_score(r["labels"][pick], r["diffusion"][pick]) - roc_auc_score(r["labels"][pick], r["zscore_max"][pick]))
        draws[b] = np.mean(diffs)
    return summary(point, draws)


def summary(point: float, draws: np.ndarray) -> dict:
    low, high = np.quantile(draws, [0.025, 0.975])
    return {"difference": float(point), "ci95": [float(low), float(high)], "half_width": float((high - low) / 2),
            "draws": draws}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", type=Path, nargs="+", required=True, help="development-split workflow folders")
    parser.add_argument("--test", type=Path, nargs="+", required=True, help="default-split workflow folders (runs 10-12)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/detector_resolution.json")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = {}
    for split, folders in (("development", args.dev), ("test", args.test)):
        runs, per_folder = [], []
        for folder in folders:
            r = pooled_scores(folder.resolve(), split == "development")
            entry = {"folder": str(folder), "n_clean": int((r["labels"] == 0).sum()), "n_anomalous": int((r["labels"] == 1).sum()),
                     "auroc_diffusion": float(roc_auc_score(r["labels"], r["diffusion"])),
                     "auroc_zscore_max": float(roc_auc_score(r["labels"], r["zscore_max"])),
                     **without_draws(paired_bootstrap([r]))}
            if split == "test":  # the recomputation must be the workflow's
                recorded = json.loads((folder / "results/anomalies/sub001/auc.json").read_text())["detectors"]
                entry["auc_json"] = {k: recorded[k]["auroc"] for k in ("diffusion", "zscore_max")}
            print(split, json.dumps(entry), flush=True)
            runs.append(r)
            per_folder.append(entry)
        out[split] = {"folders": per_folder, "over_seeds": paired_bootstrap(runs)}
        print(split, "over seeds:", json.dumps(without_draws(out[split]["over_seeds"])), flush=True)
    # the two splits' clips are independent samples: the disagreement of their gaps, and its interval
    dev, test = out["development"]["over_seeds"], out["test"]["over_seeds"]
    out["development_minus_test"] = without_draws(summary(dev["difference"] - test["difference"], dev["draws"] - test["draws"]))
    for split in ("development", "test"):
        out[split]["over_seeds"] = without_draws(out[split]["over_seeds"])
    print("development - test:", json.dumps(out["development_minus_test"]), flush=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


def without_draws(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "draws"}


if __name__ == "__main__":
    main()
