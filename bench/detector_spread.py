"""How much the diffusion detector's pooled AUROC depends on its noise draws, and a same-cost setting that
depends on them less; development split, may choose.

    python bench/detector_spread.py DEV/seed-7 DEV/seed-8 DEV/seed-9 --draw-seeds 5 6 7 8 9 --out bench/results/detector_spread_dev.json

Why (fourteenth session, 2026-11-29): with the default model (a Gaussian plus an idle network), the
workflow's detector (reconstruction from t = 200, 2 DDIM steps, 2 noise draws: ``t200 s2 d2``) scored run 9
of the development split at 0.596-0.774 pooled AUROC over five draw seeds (sd 0.067) when run on the
model's Gaussian alone; 1 step and 4 draws (``t200 s1 d4``, the same 4 forwards per clip) scored
0.692-0.731 (sd 0.017) with a mean no lower (``bench/gaussian_detector_draws.py``, draw seeds 0-4,
``bench/results/gaussian_detector_draws_dev.json``). ridge_whitened_z, which draws nothing, scored 0.710.
The number ``auc.json`` reports is one draw.

This script confirms that on the trained models, with fresh draw seeds (5-9, none used in the exploration):
each folder (default config, development split, seeds 7-9) is scored by both settings at each draw seed
(``bench/detector_cost.py``'s ``score_folder``: the workflow's 48 calibration clips, its precision).

Rule, written before the first run: ``t200 s1 d4`` replaces the workflow's settings
(``anomalies.diffusion.steps: 1``, ``n_draws: 4``) if, over the 15 (model, draw) pairs,
(1) its pooled AUROC minus the workflow's, paired by model and draw seed, has mean >= 0;
(2) its pooled AUROC's sd over draw seeds, averaged over the three models, is at most half the workflow's;
(3) its blob voxel AUPRC minus the workflow's has mean >= -sd.
Also reported: each setting against ridge_whitened_z, and by type. The test runs are never touched here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from detector_cost import score_folder  # noqa: E402

VARIANTS = {"t200 s2 d2": ((200,), 2, 2, "residual"), "t200 s1 d4": ((200,), 1, 4, "residual")}


def decide(runs: dict) -> dict:
    """``runs[folder][draw]`` -> score_folder's ``detectors``; the rule's three parts and its verdict."""
    get = lambda name, key: np.array([[d[name][key] for d in by_draw.values()] for by_draw in runs.values()])  # noqa: E731
    workflow, candidate = get("t200 s2 d2", "auroc"), get("t200 s1 d4", "auroc")  # (models, draws)
    difference = (candidate - workflow).ravel()
    spread = {name: float(a.std(axis=1, ddof=1).mean()) for name, a in (("t200 s2 d2", workflow), ("t200 s1 d4", candidate))}
    blob = (get("t200 s1 d4", "blob_voxel_auprc") - get("t200 s2 d2", "blob_voxel_auprc")).ravel()
    ridge = get("ridge_whitened_z", "auroc")
    parts = {"auroc_difference": {"mean": float(difference.mean()), "sd": float(difference.std(ddof=1))},
             "sd_over_draws": spread,
             "blob_voxel_auprc_difference": {"mean": float(blob.mean()), "sd": float(blob.std(ddof=1))},
             "auroc_mean": {"t200 s2 d2": float(workflow.mean()), "t200 s1 d4": float(candidate.mean()),
                            "ridge_whitened_z": float(ridge.mean())}}
    adopted = (difference.mean() >= 0 and spread["t200 s1 d4"] <= 0.5 * spread["t200 s2 d2"]
               and blob.mean() >= -blob.std(ddof=1))
    return {**parts, "adopted": "t200 s1 d4" if adopted else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--draw-seeds", type=int, nargs="+", default=[5, 6, 7, 8, 9])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    runs = {}
    for folder in args.folders:
        runs[str(folder)] = {draw: score_folder(folder.resolve(), VARIANTS, draw)["detectors"] for draw in args.draw_seeds}
    decision = decide(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, **decision, "rules": __doc__}, indent=2))
    print(json.dumps(decision, indent=1))


if __name__ == "__main__":
    main()
