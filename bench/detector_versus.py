"""Two detectors of two ``bench/detector_cost.py`` results, paired by model seed (same split, same injected clips).

    python bench/detector_versus.py BASE.json "t200 s2 d2" CANDIDATE.json "score t500" [--out OUT.json]

Prints, per seed and as mean ± sd, the pooled AUROC, each type's AUROC and the blob voxel AUPRC of both, and the
candidate minus the base (positive: the candidate is better), with the two-sided paired t p of the pooled difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats


def by_seed(path: Path, name: str) -> dict:
    runs = json.loads(path.read_text())["runs"]
    return {r["train_seed"]: r["detectors"][name] for r in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", type=Path)
    parser.add_argument("base_name")
    parser.add_argument("candidate", type=Path)
    parser.add_argument("candidate_name")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    base, cand = by_seed(args.base, args.base_name), by_seed(args.candidate, args.candidate_name)
    seeds = sorted(set(base) & set(cand))
    if len(seeds) < 2:
        raise SystemExit(f"fewer than two shared seeds ({seeds}): nothing to pair")
    measures = {"pooled AUROC": lambda e: e["auroc"], "blob voxel AUPRC": lambda e: e["blob_voxel_auprc"],
                **{k: (lambda e, k=k: e["by_type"][k]) for k in base[seeds[0]]["by_type"]}}
    result = {"base": [str(args.base), args.base_name], "candidate": [str(args.candidate), args.candidate_name],
              "seeds": seeds, "measures": {}}
    print(f"| measure | {args.base_name} | {args.candidate_name} | difference (paired) |")
    print("|---|---|---|---|")
    for label, get in measures.items():
        b = np.array([get(base[s]) for s in seeds], float)
        c = np.array([get(cand[s]) for s in seeds], float)
        d = c - b
        p = float(stats.ttest_rel(c, b).pvalue) if np.std(d) > 0 else float("nan")
        result["measures"][label] = {"base": b.tolist(), "candidate": c.tolist(), "difference_mean": float(d.mean()),
                                     "difference_sd": float(d.std(ddof=1)), "p": p}
        print(f"| {label} | {b.mean():.3f} ± {b.std(ddof=1):.3f} | {c.mean():.3f} ± {c.std(ddof=1):.3f} | "
              f"{d.mean():+.3f} ± {d.std(ddof=1):.3f} (p {p:.3g}) |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
