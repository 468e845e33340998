"""Combine ``bench/detector_cost.py`` runs that differ only in the detectors' noise draws
(``--draw-seed``): per variant, the pooled AUROC and blob voxel AUPRC averaged over the draws for
each model, then mean ± sd over the models, and the paired differences to a reference variant.

    python bench/detector_draws_summary.py bench/results/detector_temporal_dev.json \
        bench/results/detector_temporal_dev_draws1.json bench/results/detector_temporal_dev_draws2.json

The development split has 15 clean clips; one noise draw moves the same model's pooled AUROC by up
to 0.2 there (bench/README section 22), so single-draw differences between variants mean little.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def table(files: list[Path], reference: str) -> tuple[list[str], dict]:
    runs = [json.loads(f.read_text())["runs"] for f in files]  # [draw][model]
    names = list(runs[0][0]["detectors"])
    types = list(runs[0][0]["detectors"][names[0]]["by_type"])

    def values(name, get):  # (draws, models)
        return np.array([[get(model["detectors"][name]) for model in draw] for draw in runs], float)

    out = {}
    for name in names:
        row = {}
        for key, get in [("auroc", lambda e: e["auroc"]), ("blob_voxel_auprc", lambda e: e["blob_voxel_auprc"]),
                         *[(k, lambda e, k=k: e["by_type"][k]) for k in types]]:
            v, base = values(name, get), values(reference, get)
            per_model, diff = v.mean(0), (v - base).mean(0)
            row[key] = {"mean": float(per_model.mean()), "sd_over_models": float(per_model.std(ddof=1)),
                        "sd_over_draws": float(v.mean(1).std(ddof=1)) if len(v) > 1 else 0.0,
                        "minus_reference_mean": float(diff.mean()), "minus_reference_sd": float(diff.std(ddof=1)),
                        "per_draw": v.mean(1).tolist()}
        out[name] = row
    return types, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--reference", default="t200 s2 d2")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    types, rows = table(args.files, args.reference)
    print(f"| detector | pooled AUROC (mean over {len(args.files)} draws; ± sd over models) | per draw | "
          f"minus {args.reference} | " + " | ".join(types) + " | blob voxel AUPRC |")
    print("|---|---|---|---|" + "---|" * len(types) + "---|")
    for name, row in rows.items():
        a = row["auroc"]
        print(f"| {name} | {a['mean']:.3f} ± {a['sd_over_models']:.3f} | "
              + " / ".join(f"{v:.3f}" for v in a["per_draw"])
              + f" | {a['minus_reference_mean']:+.3f} ± {a['minus_reference_sd']:.3f} | "
              + " | ".join(f"{row[k]['mean']:.2f}" for k in types) + f" | {row['blob_voxel_auprc']['mean']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps({"files": [str(f) for f in args.files], "reference": args.reference,
                                        "summary": rows}, indent=2))


if __name__ == "__main__":
    main()
