"""Does synthetic data from a diffusion model help when real data is scarce? The learning curve with
models trained on the same few runs (issue 16, item 2).

    python bench/learning_curve.py --sizes 1 3 --seeds 0 1 2 --parallel 6 --out bench/results/learning_curve

For each size k and seed s, one subset of k training runs (``run_subsets``, a different subset per
seed) and one workflow run up to ``sample`` in ``--out/k-runs/seed-s``: ``prep.split.exclude_runs``
leaves every other training run out of every stage, so the diffusion model is trained on the
subset only (``train.seed`` = ``sample.seed`` = s); the held-out runs 10-12 stay the held-out runs
and are only scored. Then the per-volume linear SVM on the subset's real volumes, on those plus the
model's synthetic runs (they follow the held-out runs' designs: the label sequence, not the data),
on those plus as many runs of the classical generator fitted on the subset with the same label
sequences, and on either synthetic set alone. Writes ``summary.json`` and ``summary.md`` (mean ±
sd over seeds per size). The decode stage draws the classical generator's curve in every run; this
script adds the diffusion model beside it, at the cost of one training per (size, seed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.analysis.generator_baselines import LinearGaussianGenerator, memorisation  # noqa: E402
from modalmerge.analysis.learning_curve import describe, run_subsets, scarce_data_curve  # noqa: E402
from modalmerge.config import merge_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402

KEYS = ("real", "augmented", "gain", "synthetic_only", "memorisation_ratio")


def train_and_sample(folder: Path, config: dict, cores: int, subject: str) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    with open(folder / "snakemake.log", "w") as log:
        subprocess.run([sys.executable, "-m", "snakemake", f"results/samples/{subject}/synthetic.npz", "-s",
                        str(REPO / "Snakefile"), "--directory", str(folder), "--configfile", str(folder / "config.yaml"),
                        "--cores", str(cores), "--resources", "gpu=1"], check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def curves(folder: Path, subject: str, subset: tuple, seed: int) -> dict:
    """The diffusion model's and the classical generator's curve points for one trained subset."""
    data = PreparedData.load(folder / f"results/prep/{subject}/volumes.npz")
    assert sorted(set(data.train_runs)) == sorted(subset), (data.train_runs, subset)  # trained on the subset only
    X = data.X[:, data.mask]
    with np.load(folder / f"results/samples/{subject}/synthetic.npz") as npz:
        model_X, model_y, design = npz["X"][:, data.mask], npz["label_ids"], npz["design_run"]
    # the label sequence of every synthetic run, in order, for the classical generator
    starts = np.flatnonzero(np.r_[True, np.diff(design) != 0])
    lengths = [int((data.runs == design[s]).sum()) for s in starts]
    bounds = np.cumsum([0, *lengths])
    sequences = [model_y[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    pick = np.isin(data.runs, subset)
    classical = LinearGaussianGenerator(seed=seed).fit(X[pick], data.label_ids[pick], data.runs[pick]).sample(sequences)
    out = {}
    for name, synthetic in (("diffusion", (model_X, model_y)), ("gaussian_var1", (classical, model_y))):
        curve = scarce_data_curve(X, data.label_ids, data.runs, data.test_runs, data.categories, [subset],
                                  lambda s, i, syn=synthetic: syn)
        out[name] = curve["subsets"][0]
        # copying check: nearest-training-volume distance of synthetic vs held-out real volumes
        out[name]["memorisation_ratio"] = memorisation(synthetic[0], X[np.isin(data.runs, data.test_runs)],
                                                       X[pick])["memorisation_ratio"]
    # another way to spend few samples well: a decoder that shrinks on its own (no choice to make)
    train = pick & np.isin(data.label_ids, data.categories)
    test = np.isin(data.runs, data.test_runs) & np.isin(data.label_ids, data.categories)
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X[train], data.label_ids[train])
    out["shrinkage_lda_real_only"] = float(np.mean(lda.predict(X[test]) == data.label_ids[test]))
    out["chance"] = 1 / len(data.categories)
    return out


def plot_curves(summary: dict, path: Path, chance: float) -> None:
    """Held-out accuracy against real training runs: real only, + diffusion runs, + classical runs,
    mean ± sd over seeds (one run subset per seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = sorted(summary, key=int)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    lines = (("diffusion", "real", "real runs only", 0.0), ("diffusion", "augmented", "+ diffusion runs", -0.06),
             ("gaussian_var1", "augmented", "+ classical-generator runs", 0.06),
             ("diffusion", "synthetic_only", "diffusion runs only", -0.12))
    for name, key, label, shift in lines:
        means = [summary[k][name][key]["mean"] for k in sizes]
        sds = [summary[k][name][key]["sd"] for k in sizes]
        ax.errorbar([int(k) + shift for k in sizes], means, yerr=sds, marker="o", capsize=3, label=label)
    ax.axhline(chance, color="grey", linestyle=":", label="chance")
    ax.set_xticks([int(k) for k in sizes])
    ax.set_xlabel("real training runs (the diffusion model trained on these only)")
    ax.set_ylabel("held-out accuracy (runs 10-12)")
    ax.set_title("per-volume linear SVM, mean ± sd over seeds", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "learning_curve")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2, help="--cores of each workflow run")
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--train-runs", type=int, nargs="+", default=list(range(1, 10)),
                        help="the training runs the subsets are drawn from (default: the embedded subject's 1-9)")
    parser.add_argument("--summarise-only", action="store_true", help="no runs: summarise the finished folders in --out")
    args = parser.parse_args()
    base = yaml.safe_load(args.configfile.read_text()) or {}
    base["subjects"] = [args.subject]
    base["stages"] = {**base.get("stages", {}), "decode": False, "anomalies": False}
    train_runs = args.train_runs
    jobs = []
    for k in args.sizes:
        subsets = run_subsets(train_runs, [k], repeats=len(args.seeds), seed=0)
        for seed, subset in zip(args.seeds, subsets):
            config = merge_config(base, {"prep": {"split": {"exclude_runs": [r for r in train_runs if r not in subset]}},
                                         **{block: {"seed": seed} for block in ("train", "sample")}})
            jobs.append((k, seed, subset, args.out / f"{k}-runs" / f"seed-{seed}", config))
    walls = {}
    if not args.summarise_only:
        with ThreadPoolExecutor(args.parallel) as pool:
            futures = {(k, seed): pool.submit(train_and_sample, folder, config, args.cores, args.subject)
                       for k, seed, _, folder, config in jobs}
            for key, future in futures.items():
                walls[key] = future.result()
                print(f"done {key[0]} runs, seed {key[1]}: {walls[key]:.0f} s", flush=True)
    rows = {}
    for k, seed, subset, folder, _ in jobs:
        if (folder / f"results/samples/{args.subject}/synthetic.npz").exists():
            rows.setdefault(k, []).append({"seed": seed, "subset": list(subset), **curves(folder, args.subject, subset, seed)})
    summary = {str(k): {"n_seeds": len(found), "runs": found,
                        **{name: {key: describe([r[name][key] for r in found]) for key in KEYS}
                           for name in ("diffusion", "gaussian_var1")},
                        "shrinkage_lda_real_only": describe([r["shrinkage_lda_real_only"] for r in found])}
               for k, found in sorted(rows.items())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| real runs | seeds | real only | + diffusion runs | gain | diffusion only | memorisation ratio | "
             "+ classical runs | gain | classical only | memorisation ratio | shrinkage LDA, real only |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, entry in summary.items():
        cell = lambda name, key: f"{entry[name][key]['mean']:.3f} ± {entry[name][key]['sd']:.3f}"  # noqa: E731
        lines.append(f"| {k} | {entry['n_seeds']} | {cell('diffusion', 'real')} | {cell('diffusion', 'augmented')} | "
                     f"{cell('diffusion', 'gain')} | {cell('diffusion', 'synthetic_only')} | "
                     f"{cell('diffusion', 'memorisation_ratio')} | {cell('gaussian_var1', 'augmented')} | "
                     f"{cell('gaussian_var1', 'gain')} | {cell('gaussian_var1', 'synthetic_only')} | "
                     f"{cell('gaussian_var1', 'memorisation_ratio')} | "
                     f"{entry['shrinkage_lda_real_only']['mean']:.3f} ± {entry['shrinkage_lda_real_only']['sd']:.3f} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    if summary:
        plot_curves(summary, args.out / "learning_curve.png", chance=next(iter(rows.values()))[0]["chance"])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
