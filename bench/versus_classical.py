"""The diffusion model's synthetic runs against the classical generator's, paired by seed, on the measures
the generation issue's targets name (a reading of ``fidelity.json``s; nothing is chosen here).

    python bench/versus_classical.py FOLDER [--seeds 0 1 2] [--generator gaussian_var1] [--out FILE.json]

FOLDER holds ``seed-N`` folders with a ``fidelity.json`` (directly, or at ``results/eval/sub001/``, as
``bench/ablation.py`` leaves them). In each, the classical generator (``generator_baselines.gaussian_var1``)
was sampled along the same held-out designs with the same evaluation seed, so the two are paired
(``--generator gaussian_coloured``: the linear part of ``sample.residual_dynamics: coloured``). For
each measure: both means ± sd, the favourable difference (diffusion better: positive), a paired t test,
and whether the two seed ranges overlap (the issue asks for spreads that do not). ``--preprocessed``
compares the sets after every synthetic run was detrended and standardised like a real run
(``preprocessed_like_real``, bench/README 37; the held-out values stay the plain ones).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

MEASURES = {  # name: (how to read it from a fidelity entry, "lower" or "higher" is better, or a real value to be close to)
    "connectivity similarity": (lambda f: f["connectivity_similarity"], "higher"),
    "MMD²": (lambda f: f["mmd"]["mmd2"], "lower"),
    "C2ST, RBF": (lambda f: f["c2st_rbf_accuracy"], "lower"),
    "C2ST, linear": (lambda f: f["c2st_accuracy"], "closer to 0.5"),
    "TSTR": (lambda f: f["tstr_accuracy"], "higher"),
    "global std": (lambda f: synthetic(f["global_std"]), "closer to real"),
    "autocorrelation lag 1": (lambda f: synthetic(f["temporal_autocorrelation"])["lag1"], "closer to real lag1"),
    "autocorrelation lag 2": (lambda f: synthetic(f["temporal_autocorrelation"])["lag2"], "closer to real lag2"),
    "autocorrelation lag 3": (lambda f: synthetic(f["temporal_autocorrelation"])["lag3"], "closer to real lag3"),
}


def synthetic(entry):
    """The model's entries hold {"synthetic", "heldout_real"}; the classical generator's the value alone."""
    return entry["synthetic"] if isinstance(entry, dict) and "synthetic" in entry else entry


def fidelity(seed_dir: Path) -> dict:
    for path in (seed_dir / "fidelity.json", seed_dir / "results" / "eval" / "sub001" / "fidelity.json"):
        if path.exists():
            return json.loads(path.read_text())
    raise SystemExit(f"{seed_dir}: no fidelity.json")


def favourable(kind: str, model: float, classical: float, f: dict) -> float:
    if kind == "higher":
        return model - classical
    if kind == "lower":
        return classical - model
    if kind == "closer to 0.5":
        return abs(classical - 0.5) - abs(model - 0.5)
    if kind == "closer to real":
        real = f["global_std"]["heldout_real"]
    else:
        real = f["temporal_autocorrelation"]["heldout_real"][kind.rsplit(" ", 1)[-1]]
    return abs(classical - real) - abs(model - real)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+")
    parser.add_argument("--generator", default="gaussian_var1", help="a key of fidelity.json's generator_baselines")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--preprocessed", action="store_true",
                        help="compare the sets preprocessed like the real runs (fidelity.json's preprocessed_like_real)")
    args = parser.parse_args()
    dirs = sorted(args.folder.glob("seed-*"), key=lambda p: int(p.name.split("-")[1]))
    if args.seeds:
        dirs = [d for d in dirs if int(d.name.split("-")[1]) in args.seeds]
    fids = [fidelity(d) for d in dirs]
    out = {"seeds": [int(d.name.split("-")[1]) for d in dirs], "generator": args.generator, "measures": {}}
    lines = [f"| measure | diffusion | classical generator ({args.generator}) | favourable difference (paired) | p (paired t) | ranges overlap |",
             "|---|---|---|---|---|---|"]
    if args.preprocessed:
        missing = [str(d) for d, f in zip(dirs, fids) if "preprocessed_like_real" not in f]
        if missing:
            raise SystemExit(f"no preprocessed_like_real in the fidelity.json of {missing}: evaluate them again with this code")
    model_of = (lambda f: f["preprocessed_like_real"]["synthetic"]) if args.preprocessed else (lambda f: f)
    generators_of = (lambda f: f["preprocessed_like_real"]["generator_baselines"]) if args.preprocessed else (lambda f: f["generator_baselines"])
    out["preprocessed"] = args.preprocessed
    for name, (read, kind) in MEASURES.items():
        model = np.array([read(model_of(f)) for f in fids])
        classical = np.array([read(generators_of(f)[args.generator]) for f in fids])
        diff = np.array([favourable(kind, m, c, f) for m, c, f in zip(model, classical, fids)])
        p = float(stats.ttest_1samp(diff, 0).pvalue) if len(diff) > 1 else None
        overlap = bool(model.min() <= classical.max() and classical.min() <= model.max())
        out["measures"][name] = {"diffusion": model.tolist(), "classical": classical.tolist(), "favourable_difference": diff.tolist(),
                                 "p_value": p, "ranges_overlap": overlap, "better": kind}
        sd = lambda v: v.std(ddof=1) if len(v) > 1 else 0.0  # noqa: E731
        lines.append(f"| {name} ({kind}) | {model.mean():.4g} ± {sd(model):.2g} | {classical.mean():.4g} ± {sd(classical):.2g} | "
                     f"{diff.mean():+.4g} ± {sd(diff):.2g} | {p:.3g} | {'yes' if overlap else 'no'} |" if p is not None else
                     f"| {name} ({kind}) | {model.mean():.4g} | {classical.mean():.4g} | {diff.mean():+.4g} | | |")
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
