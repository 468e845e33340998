"""Multi-seed evidence: train, sample and evaluate one configuration for several seeds and report
mean +- sd of every realism measure, for the model and the classical generator side by side.

    python bench/seeds.py --seeds 0 1 2 --cores 2                       # the default config
    python bench/seeds.py --seeds 0 1 2 --configfile my.yaml --out bench/results/seeds-my
    python bench/seeds.py --seeds 0 1 2 --all-stages --out bench/results/default_seeds   # + decoding, anomalies

Each seed runs the workflow up to evaluate_ssim in its own folder (``--out``/seed-N; the download
cache is shared) with ``train.seed`` and ``sample.seed`` set to N; the classical generator is seeded
with ``evaluate.seed`` = N too. Writes ``summary.json`` and ``summary.md`` in ``--out`` and prints the
table. On 2 CPU cores one default seed takes about 25 minutes; on a GPU, minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.stages.report_summary import REALISM_MEASURES  # noqa: E402


def run_seed(seed: int, config: dict, out: Path, cores: int, subject: str, all_stages: bool = False) -> dict:
    folder = out / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(config))
    for block in ("train", "sample", "evaluate"):
        config.setdefault(block, {})["seed"] = seed
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    target = f"results/eval/{subject}/fidelity.json"
    targets = [target, *(OTHER_OUTPUTS.values() if all_stages else [])]
    subprocess.run([sys.executable, "-m", "snakemake", *[t.format(subject=subject) for t in targets], "-s",
                    str(REPO / "Snakefile"), "--directory", str(folder), "--configfile", str(folder / "config.yaml"),
                    "--cores", str(cores), "--resources", "gpu=1"], check=True)
    return json.loads((folder / target).read_text())


OTHER_OUTPUTS = {"decoding": "results/decode/{subject}/decoding.json", "auc": "results/anomalies/{subject}/auc.json"}


def analyses(folders: dict[int, Path], subject: str) -> dict:
    """Over seeds: the diffusion classifier against the block-averaged SVM (same held-out blocks), and the
    diffusion detector against the best classical detector, pooled and per anomaly type."""
    read = lambda folder, key: json.loads((folder / OTHER_OUTPUTS[key].format(subject=subject)).read_text())
    out = {"decoding": {}, "anomalies": {}}
    decoding = {seed: read(folder, "decoding")["decoders"] for seed, folder in folders.items()}
    for name in sorted(set.intersection(*[set(d) for d in decoding.values()])):
        out["decoding"][name] = describe([d[name]["accuracy"] for d in decoding.values()])
        out["decoding"][name]["p_values"] = [d[name]["p_value"] for d in decoding.values()]
    auc = {seed: read(folder, "auc")["detectors"] for seed, folder in folders.items()}
    for name in sorted(set.intersection(*[set(d) for d in auc.values()])):
        entry = {"pooled": describe([d[name]["auroc"] for d in auc.values()])}
        for kind in auc[next(iter(auc))][name].get("by_type", {}):
            entry[kind] = describe([d[name]["by_type"][kind]["auroc"] for d in auc.values()])
        out["anomalies"][name] = entry
    return out


def analyses_markdown(summary: dict) -> str:
    rows = ["| decoder | held-out accuracy (mean ± sd over seeds) | per seed | p per seed |", "|---|---|---|---|"]
    rows += [f"| {name} | {mean_sd(e)} | {', '.join(f'{v:.3f}' for v in e['values'])} | "
             f"{', '.join(f'{p:.3g}' for p in e['p_values'])} |" for name, e in summary["decoding"].items()]
    kinds = [k for k in next(iter(summary["anomalies"].values()), {}) if k != "pooled"]
    rows += ["", "| detector | pooled AUROC | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    rows += [f"| {name} | {mean_sd(e['pooled'])} | " + " | ".join(mean_sd(e[k]) if k in e else "–" for k in kinds) + " |"
             for name, e in summary["anomalies"].items()]
    return "\n".join(rows)


def describe(values: list[float]) -> dict:
    """mean, sd (None for one value) and the values themselves."""
    return {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": [float(v) for v in values]}


def mean_sd(entry: dict) -> str:
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}" if entry["sd"] is not None else f"{entry['mean']:.3f}"


def summarise(fidelities: dict[int, dict]) -> dict:
    """mean, sd and per-seed values of every realism measure, model and classical generator."""
    out = {}
    for measure, (model_of, generator_of, real_of, better) in REALISM_MEASURES.items():
        model = [model_of(f) for f in fidelities.values()]
        generator = [generator_of(f["generator_baselines"]["gaussian_var1"]) for f in fidelities.values()]
        real = [real_of(f) for f in fidelities.values()]
        out[measure] = {"better": better, "seeds": list(fidelities),
                        "model": describe(model), "gaussian_var1": describe(generator),
                        "real_or_ceiling": float(np.mean(real))}
        # real training runs of the synthetic set's size, every group of every seed's evaluation
        same_size = [generator_of(g) for f in fidelities.values() for g in f.get("real_runs_reference", {}).get("per_group", [])]
        if same_size:
            out[measure]["real_runs_same_size"] = {"mean": float(np.mean(same_size)), "min": float(min(same_size)),
                                                   "max": float(max(same_size))}
    return out


def markdown(summary: dict) -> str:
    rows = ["| measure | model (mean ± sd) | classical generator (mean ± sd) | real runs, same size: mean [min, max] | "
            "real / ceiling | better is |", "|---|---|---|---|---|---|"]
    same_size = lambda e: (f"{e['mean']:.3g} [{e['min']:.3g}, {e['max']:.3g}]" if e else "–")
    rows += [f"| {m} | {mean_sd(e['model'])} | {mean_sd(e['gaussian_var1'])} | {same_size(e.get('real_runs_same_size'))} | "
             f"{e['real_or_ceiling']:.3f} | {e['better']} |" for m, e in summary.items()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "seeds")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--all-stages", action="store_true",
                        help="also decode and score anomalies for every seed, and summarise the diffusion classifier "
                             "and detector beside the classical ones")
    parser.add_argument("--summarise-only", action="store_true",
                        help="run nothing: summarise the seeds' outputs already under --out/seed-N/results")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text()) or {}
    config["subjects"] = [args.subject]
    if not args.all_stages:
        config["stages"] = {**config.get("stages", {}), "decode": False, "anomalies": False}
    folders = {seed: args.out / f"seed-{seed}" for seed in args.seeds}
    if args.summarise_only:
        fidelities = {seed: json.loads((folder / f"results/eval/{args.subject}/fidelity.json").read_text())
                      for seed, folder in folders.items()}
    else:
        fidelities = {seed: run_seed(seed, config, args.out, args.cores, args.subject, args.all_stages) for seed in args.seeds}
    summary = summarise(fidelities)
    text = markdown(summary)
    if args.all_stages:
        summary = {"realism": summary, **analyses(folders, args.subject)}
        text += "\n\n" + analyses_markdown(summary)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
