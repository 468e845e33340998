"""How much can synthetic runs help a decoder trained on 1-3 real runs? The development split's
answer, for the classical generator, by the number of synthetic runs per real run (issue 16, item 2).

    python bench/augmentation_dev.py results/prep/sub001/volumes.npz --out bench/results/augmentation_dev.json

Only the training runs 1-9 are read. For each size k in 1, 2, 3, ``--repeats`` subsets of k runs
(``run_subsets``, seed 0); each decoder is trained on the subset's category volumes, alone and with
``m`` synthetic runs per real run from :class:`LinearGaussianGenerator` fitted on the subset only
(``GeneratorSynthesiser``, following the subset's own designs), for m in 1, 4, 16; it is scored on
every training run outside the subset (so k = 1 is scored on 8 runs, not on run 9 alone: the runs
10-12 are never read). Decoders: the per-volume linear SVM of the learning curve, and shrinkage LDA.

Why m: a generator fitted on the same runs adds no information about the categories; what it can add
is a regulariser. As m grows the SVM trained on the mixture approaches the classifier that is best
under the generator's own Gaussian model (category means, Ledoit-Wolf covariance), so the gain is
bounded by how much better that rule is than the SVM on real data alone.

Rule, written before the run: if for some m the linear SVM's mean gain (augmented - real) at k = 1
or k = 2 is >= 0.05 with its sd over the subsets below its mean, the smallest such m becomes
``decode.learning_curve_synthetic_runs_per_run`` and is then measured on the test runs; otherwise the
setting stays at 1 and the issue's >= 5-point target is reported as missed with this table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.analysis.decoding import linear_svm, shrinkage_lda  # noqa: E402
from modalmerge.analysis.learning_curve import GeneratorSynthesiser, describe, run_subsets, scarce_data_curve  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402

TRAIN_RUNS = list(range(1, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volumes", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/augmentation_dev.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--per-run", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    data = PreparedData.load(args.volumes)
    assert set(TRAIN_RUNS) <= set(data.train_runs), data.train_runs
    keep = np.isin(data.runs, TRAIN_RUNS)  # the test runs 10-12 are dropped before anything else
    X, labels, runs = data.X[keep][:, data.mask], data.label_ids[keep], data.runs[keep]
    rows = []
    for k in args.sizes:
        for subset in run_subsets(TRAIN_RUNS, [k], args.repeats, seed=0):
            scored = [r for r in TRAIN_RUNS if r not in subset]
            for m in args.per_run:
                synthetic = GeneratorSynthesiser(X, labels, runs, runs_per_run=m, seed=0)(subset, 0)  # once for both decoders
                for name, decoder in (("linear_svm", linear_svm()), ("shrinkage_lda", shrinkage_lda())):
                    curve = scarce_data_curve(X, labels, runs, scored, data.categories, [subset], lambda s, i: synthetic,
                                              decoder=decoder, n_jobs=1)
                    row = curve["subsets"][0]
                    rows.append({"k": k, "subset": list(subset), "per_run": m, "decoder": name, **row})
                    print(f"k={k} {subset} m={m} {name}: real {row['real']:.3f} augmented {row['augmented']:.3f} "
                          f"synthetic only {row['synthetic_only']:.3f}", flush=True)
    summary = {}
    for k in args.sizes:
        for m in args.per_run:
            for name in ("linear_svm", "shrinkage_lda"):
                found = [r for r in rows if r["k"] == k and r["per_run"] == m and r["decoder"] == name]
                summary[f"k={k} m={m} {name}"] = {key: describe([r[key] for r in found])
                                                   for key in ("real", "augmented", "gain", "synthetic_only")}
    chosen = None
    for m in sorted(args.per_run):
        for k in (1, 2):
            g = summary.get(f"k={k} m={m} linear_svm", {}).get("gain")
            if g and g["mean"] >= 0.05 and g["sd"] < g["mean"] and chosen is None:
                chosen = m
    args.out.write_text(json.dumps({"rows": rows, "summary": summary, "chosen_synthetic_runs_per_run": chosen,
                                    "rules": __doc__}, indent=2))
    print("| k | synthetic runs per real run | decoder | real only | + synthetic | gain | synthetic only |")
    print("|---|---|---|---|---|---|---|")
    for key, s in summary.items():
        k, m, name = key.split(" ")
        cell = lambda v: f"{v['mean']:.3f} ± {v['sd']:.3f}"  # noqa: E731
        print(f"| {k[2:]} | {m[2:]} | {name} | {cell(s['real'])} | {cell(s['augmented'])} | {cell(s['gain'])} | "
              f"{cell(s['synthetic_only'])} |")
    print("chosen:", chosen)


if __name__ == "__main__":
    main()
