"""The detection part of the rule in ``bench/ablation_shrinkage_cpu.yaml``: the workflow's detector (t200 s1 d4) on
the models of both arms, paired by seed and draw (development split; the test runs are never touched).

    python bench/shrinkage_detector.py --baseline OUT/ledoit_wolf/seed-{7,8,9} --candidate OUT/run_cv/seed-{7,8,9} \
        --draw-seeds 0 1 2 3 4 --out bench/results/shrinkage_detector_dev.json

Each folder is scored by ``bench/detector_cost.py``'s ``score_folder`` (the workflow's 48 calibration clips, its
precision) at each draw seed. The rule's detection clause: the candidate's pooled AUROC minus the baseline's over the
(seed, draw) pairs has mean > sd, and its blob voxel AUPRC minus the baseline's has mean >= -sd.
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

WORKFLOW = {"t200 s1 d4": ((200,), 1, 4, "residual")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, nargs="+", required=True)
    parser.add_argument("--candidate", type=Path, nargs="+", required=True)
    parser.add_argument("--draw-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if len(args.baseline) != len(args.candidate):
        parser.error("give one candidate folder per baseline folder (paired by seed)")
    runs = {arm: {str(f): {d: score_folder(f.resolve(), WORKFLOW, d)["detectors"] for d in args.draw_seeds} for f in folders}
            for arm, folders in (("baseline", args.baseline), ("candidate", args.candidate))}
    get = lambda arm, name, key: np.array([[d[name][key] for d in by_draw.values()] for by_draw in runs[arm].values()])  # noqa: E731
    auroc = {arm: get(arm, "t200 s1 d4", "auroc") for arm in runs}
    blob = {arm: get(arm, "t200 s1 d4", "blob_voxel_auprc") for arm in runs}
    difference, blob_difference = (auroc["candidate"] - auroc["baseline"]).ravel(), (blob["candidate"] - blob["baseline"]).ravel()
    types = list(next(iter(next(iter(runs["baseline"].values())).values()))["t200 s1 d4"]["by_type"])
    summary = {
        "auroc_mean": {arm: float(a.mean()) for arm, a in auroc.items()},
        "auroc_sd_over_draws": {arm: float(a.std(axis=1, ddof=1).mean()) for arm, a in auroc.items()},
        "ridge_whitened_z": {arm: float(get(arm, "ridge_whitened_z", "auroc").mean()) for arm in runs},
        "blob_voxel_auprc_mean": {arm: float(b.mean()) for arm, b in blob.items()},
        "by_type": {arm: {t: float(np.mean([[d["t200 s1 d4"]["by_type"][t] for d in by_draw.values()]
                                             for by_draw in runs[arm].values()])) for t in types} for arm in runs},
        "auroc_difference": {"mean": float(difference.mean()), "sd": float(difference.std(ddof=1))},
        "blob_voxel_auprc_difference": {"mean": float(blob_difference.mean()), "sd": float(blob_difference.std(ddof=1))},
    }
    summary["detection_clause_met"] = bool(difference.mean() > difference.std(ddof=1)
                                           and blob_difference.mean() >= -blob_difference.std(ddof=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, **summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
