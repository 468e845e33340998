"""Paired comparison of two arms of an ablation, seed by seed, on every realism measure.

    python bench/paired.py BASELINE_DIR VARIANT_DIR [VARIANT_DIR ...] [--out FILE.md]

Each DIR holds ``seed-N`` folders with a ``fidelity.json`` (directly, as stored under
``bench/results``, or at ``results/eval/SUBJECT/fidelity.json``, as ``bench/ablation.py`` leaves them).
Only seeds present in both arms are paired. For each measure of the report's ``REALISM_MEASURES`` the
difference variant - baseline is taken per seed (for "closer" measures: the baseline's distance to the
real value minus the variant's, so positive is favourable there too; for "lower" the sign is turned so
that positive is favourable everywhere), and the verdict says whether its mean is beyond its sd:
"better", "worse" or "within spread"; beside it the two-sided p of a paired t test on the same
differences. Beyond the sd is a weak criterion: with 3 seeds it means t > sqrt(3) with 2 degrees of
freedom, p = 0.23 per measure under no effect (section 21 of bench/README.md shows a rerun of one
arm against itself getting 6 such verdicts out of 15). Also the memorisation ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.stages.report_summary import REALISM_MEASURES  # noqa: E402


def fidelities(folder: Path, subject: str = "sub001") -> dict[int, dict]:
    """``{seed: fidelity.json}`` of the ``seed-N`` folders in ``folder``."""
    out = {}
    for seed_dir in sorted(folder.glob("seed-*")):
        for path in (seed_dir / "fidelity.json", seed_dir / "results" / "eval" / subject / "fidelity.json"):
            if path.exists():
                out[int(seed_dir.name.split("-")[1])] = json.loads(path.read_text())
                break
    return out


def favourable_difference(better: str, base: float, variant: float, real: float) -> float:
    """variant minus baseline, signed so that positive is favourable."""
    if better == "higher":
        return variant - base
    if better == "lower":
        return base - variant
    return abs(base - real) - abs(variant - real)


def compare(base: dict[int, dict], variant: dict[int, dict]) -> dict:
    seeds = sorted(set(base) & set(variant))
    if not seeds:
        raise SystemExit("no seed is in both arms")
    rows = {}
    measures = dict(REALISM_MEASURES)
    measures["memorisation ratio"] = (lambda f: f["memorisation"]["ratio"], None, lambda f: 1.0, "higher")
    for name, (model_of, _, real_of, better) in measures.items():
        a = np.array([model_of(base[s]) for s in seeds], float)
        b = np.array([model_of(variant[s]) for s in seeds], float)
        real = np.array([real_of(base[s]) for s in seeds], float)
        diff = np.array([favourable_difference(better, x, y, r) for x, y, r in zip(a, b, real)])
        sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else float("nan")
        mean = float(diff.mean())
        verdict = "within spread" if not abs(mean) > sd else ("better" if mean > 0 else "worse")
        p = float(stats.ttest_1samp(diff, 0.0).pvalue) if len(diff) > 1 and sd > 0 else float("nan")
        rows[name] = {"better": better, "seeds": seeds, "baseline": a.tolist(), "variant": b.tolist(),
                      "real": float(real.mean()), "favourable_difference": diff.tolist(),
                      "mean": mean, "sd": sd, "verdict": verdict, "p_paired_t": p}
    return rows


def markdown(name: str, rows: dict) -> str:
    fmt = lambda v: f"{np.mean(v):.4g} ± {np.std(v, ddof=1):.2g}" if len(v) > 1 else f"{v[0]:.4g}"
    lines = [f"| measure | baseline | {name} | favourable difference (mean ± sd) | verdict | p (paired t) | real / ceiling | better is |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {fmt(r['baseline'])} | {fmt(r['variant'])} | {r['mean']:+.4f} ± {r['sd']:.4f} | {r['verdict']} | "
              f"{r['p_paired_t']:.3g} | {r['real']:.3f} | {r['better']} |" for m, r in rows.items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path)
    parser.add_argument("variants", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="write the tables (markdown) and, beside them, the numbers (.json)")
    args = parser.parse_args(argv)
    base = fidelities(args.baseline)
    tables, numbers = [], {}
    for folder in args.variants:
        rows = compare(base, fidelities(folder))
        numbers[folder.name] = rows
        tables.append(f"### {folder.name} against {args.baseline.name}\n\n{markdown(folder.name, rows)}\n")
    text = "\n".join(tables)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n")


if __name__ == "__main__":
    main()
