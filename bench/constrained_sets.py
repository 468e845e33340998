"""Set-level realism with the real runs' whole-run constraint given to every set (a measurement).

    python bench/constrained_sets.py --prep RESULTS/prep/sub001/volumes.npz \\
        --synthetic SEED0/synthetic.npz SEED1/synthetic.npz SEED2/synthetic.npz --seeds 0 1 2 \\
        --real-sets bench/results/real_triples_test/real_triples.json --out bench/results/constrained_sets_test

Every real run went through mask-and-normalize: linear detrending, then a z-score of each voxel over
the run, so each voxel of each real run has mean exactly 0 and sample sd 1. A synthetic run has no such
constraint. Runs 10-12 and every set of real training runs share it, and section 33 of bench/README
found that the shared constraint alone moves the C2STs and MMD² (past the real-vs-real level), so on
those measures real sets were favoured over any generator (section 36).

Here each synthetic run of the model (the sample stage's ``synthetic.npz`` of each seed) and of the
classical generator (``gaussian_var1``, sampled as the evaluate stage does with evaluation seed N) is
put through the same preprocessing as a real run (``preprocessed_like_real`` of the evaluate stage, since
2026-11-29 ``preprocessed_like_real`` in ``fidelity.json``: nilearn ``clean`` with ``detrend=True``,
``standardize="zscore_sample"``, voxel by voxel over the run), and scored with the evaluate stage's
``set_metrics`` against runs 10-12 (evaluation seed N, as in that seed's fidelity.json). The
unconstrained numbers are computed too; they reproduce the ``fidelity.json`` of each seed. Nothing is
chosen: this says which part of the model's distance from real sets on MMD² and the C2STs is the
constraint, and whether the model or the classical generator is nearer once both carry it.

Writes ``OUT/summary.json`` and ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from modalmerge.analysis import fidelity_metrics as F  # noqa: E402
from modalmerge.analysis.fidelity import contiguous_segments  # noqa: E402
from modalmerge.analysis.fidelity_reference import generator_sets, heldout_reference, preprocessed_like_real  # noqa: E402
from modalmerge.analysis.generator_baselines import set_metrics  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from real_triples import write_summary  # noqa: E402

MEASURES = {  # name: (reader of a set_metrics entry, better)
    "connectivity similarity": (lambda g: g["connectivity_similarity"], "higher"),
    "C2ST, RBF": (lambda g: g["c2st_rbf_accuracy"], "lower"),
    "C2ST, linear": (lambda g: g["c2st_accuracy"], "lower"),
    "MMD²": (lambda g: g["mmd"]["mmd2"], "lower"),
    "TSTR": (lambda g: g["tstr_accuracy"], "higher"),
    "global std": (lambda g: g["global_std"], "closer to real"),
    "autocorrelation lag 1": (lambda g: g["temporal_autocorrelation"]["lag1"], "closer to real"),
    "autocorrelation lag 2": (lambda g: g["temporal_autocorrelation"]["lag2"], "closer to real"),
    "autocorrelation lag 3": (lambda g: g["temporal_autocorrelation"]["lag3"], "closer to real"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prep", required=True)
    parser.add_argument("--synthetic", nargs="+", required=True, help="synthetic.npz of the sample stage, one per seed")
    parser.add_argument("--seeds", nargs="+", type=int, required=True, help="evaluation seed of each (the config seed)")
    parser.add_argument("--real-sets", type=Path, help="real_triples.json of bench/real_triples.py (for the percentiles)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if len(args.synthetic) != len(args.seeds):
        raise SystemExit(f"{len(args.synthetic)} --synthetic files but {len(args.seeds)} --seeds: give one seed per file")

    data = PreparedData.load(args.prep)
    scores = {"model": {"plain": [], "constrained": []}, "classical": {"plain": [], "constrained": []}}
    for path, seed in zip(args.synthetic, args.seeds):
        real = heldout_reference(data, seed)
        with np.load(path) as npz:
            model = (npz["X"], npz["label_ids"], contiguous_segments(npz["design_run"]))
        for name, (X, y, segments) in (("model", model), ("classical", generator_sets(data, seed)["gaussian_var1"])):
            scores[name]["plain"].append(set_metrics(X, y, segments, **real))
            scores[name]["constrained"].append(set_metrics(preprocessed_like_real(X, segments, data.mask), y, segments, **real))
        print(f"seed {seed} done", flush=True)
    real_sets = json.loads(args.real_sets.read_text())["per_group"] if args.real_sets else []
    rows = []
    for measure, (read, better) in MEASURES.items():
        row = {"measure": measure, "better": better}
        for name in scores:
            for kind in ("plain", "constrained"):
                row[f"{name}_{kind}"] = [float(read(s)) for s in scores[name][kind]]
        if real_sets:
            values = np.array([read(g) for g in real_sets])
            row["real_sets"] = [float(values.mean()), float(values.min()), float(values.max())]
            if better in ("higher", "lower"):  # the share of real sets a set beats (real_triples.py's convention)
                beats = (lambda v: values < v) if better == "higher" else (lambda v: values > v)
                row["model_constrained_percentile"] = float(beats(np.mean(row["model_constrained"])).mean() * 100)
                row["classical_constrained_percentile"] = float(beats(np.mean(row["classical_constrained"])).mean() * 100)
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    test = data.is_test
    heldout = {"global std": float(data.X[test][:, data.mask].std()),
               **{f"autocorrelation lag {k}": v for k, v in
                  ((int(name[3:]), float(value)) for name, value in
                   F.temporal_autocorrelation(data.X[test], data.runs[test], data.mask).items()) if k <= 3}}
    summary = {"seeds": args.seeds, "synthetic": [str(p) for p in args.synthetic], "rows": rows, "heldout_real": heldout,
               "note": __doc__.split("\n\n")[2].replace("\n", " ")}
    write_summary(args.out, summary, markdown)
    return 0


def cell(values: list) -> str:
    f = (lambda v: f"{v:.4f}") if max(abs(v) for v in values) < 0.01 else (lambda v: f"{v:.3f}")
    return f"{f(np.mean(values))} ± {f(np.std(values, ddof=1))}" if len(values) > 1 else f(values[0])


def markdown(s: dict) -> str:
    lines = ["| measure (better) | model | model, constrained | classical | classical, constrained | real sets: mean [min, max] "
             "| real sets it beats, constrained (%): model / classical |", "|---|---|---|---|---|---|---|"]
    for r in s["rows"]:
        real = r.get("real_sets")
        real_cell = f"{cell([real[0]])} [{cell([real[1]])}, {cell([real[2]])}]" if real else ""
        pct = (f"{r['model_constrained_percentile']:.0f} / {r['classical_constrained_percentile']:.0f}"
               if "model_constrained_percentile" in r else "")
        better = f"closer to {s['heldout_real'][r['measure']]:.3f}" if r["better"] == "closer to real" else r["better"]
        lines.append(f"| {r['measure']} ({better}) | {cell(r['model_plain'])} | {cell(r['model_constrained'])} "
                     f"| {cell(r['classical_plain'])} | {cell(r['classical_constrained'])} | {real_cell} | {pct} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
