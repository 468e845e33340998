"""Multi-seed evidence: train, sample and evaluate one configuration for several seeds and report
mean +- sd of every realism measure, for the model and the classical generator side by side.

    python bench/seeds.py --seeds 0 1 2 --cores 2                       # the default config
    python bench/seeds.py --seeds 0 1 2 --configfile my.yaml --out bench/results/seeds-my

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


def run_seed(seed: int, config: dict, out: Path, cores: int, subject: str) -> dict:
    folder = out / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads(json.dumps(config))
    for block in ("train", "sample", "evaluate"):
        config.setdefault(block, {})["seed"] = seed
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    target = f"results/eval/{subject}/fidelity.json"
    subprocess.run([sys.executable, "-m", "snakemake", target, "-s", str(REPO / "Snakefile"), "--directory", str(folder),
                    "--configfile", str(folder / "config.yaml"), "--cores", str(cores), "--resources", "gpu=1"],
                   check=True)
    return json.loads((folder / target).read_text())


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
    return out


def markdown(summary: dict) -> str:
    rows = ["| measure | model (mean ± sd) | classical generator (mean ± sd) | real / ceiling | better is |",
            "|---|---|---|---|---|"]
    rows += [f"| {m} | {mean_sd(e['model'])} | {mean_sd(e['gaussian_var1'])} | {e['real_or_ceiling']:.3f} | {e['better']} |"
             for m, e in summary.items()]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "seeds")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--subject", default="sub001")
    args = parser.parse_args()
    config = yaml.safe_load(args.configfile.read_text()) or {}
    config["subjects"] = [args.subject]
    config["stages"] = {**config.get("stages", {}), "decode": False, "anomalies": False}
    fidelities = {seed: run_seed(seed, config, args.out, args.cores, args.subject) for seed in args.seeds}
    summary = summarise(fidelities)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.md").write_text(markdown(summary) + "\n")
    print(markdown(summary))


if __name__ == "__main__":
    main()
