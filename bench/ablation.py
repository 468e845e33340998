"""Ablation over seeds: several model/sampler variants, each trained, sampled and evaluated for
every seed, then mean ± sd of every realism measure per variant beside the classical generator.

    python bench/ablation.py --variants bench/ablation.yaml --seeds 0 1 2 --parallel 4 --cores 2

``--variants`` is a YAML mapping ``name: overlay`` (an overlay is a partial config, merged into
``--configfile``); an overlay may say ``reuse_model_of: other`` to sample and evaluate the
checkpoints of another variant (a sampler change needs no new training). Each (variant, seed) runs
the workflow up to ``evaluate_ssim`` in ``--out/variant/seed-N`` with ``train.seed``,
``sample.seed`` and ``evaluate.seed`` = N; ``--parallel`` of them run at once (on a GPU, several
small trainings share the device). Writes ``summary.json`` and ``summary.md`` to ``--out``.

Scores on the test runs (10-12) are measurements, not choices. ``--select`` runs the same ablation on
a development split inside the training runs, which may choose: run 9 plays the held-out run, the
test runs 10-12 are left out of every stage (``prep.split.exclude_runs``), and a variant's
validation run (``train.validation_runs``) becomes run 8.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from seeds import describe, mean_sd, summarise  # noqa: E402
from modalmerge.config import merge_config  # noqa: E402


DEVELOPMENT_SPLIT = {"test_runs": [9], "exclude_runs": [10, 11, 12]}
DEVELOPMENT_VALIDATION = [8]


def run_one(name: str, seed: int, config: dict, out: Path, cores: int, subject: str, reuse: Path | None) -> dict:
    folder = out / name / f"seed-{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    config = merge_config(config, {block: {"seed": seed} for block in ("train", "sample", "evaluate")})
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if reuse is not None:  # the other variant's data, preparation and checkpoint, timestamps kept
        for part in ("data", "prep", "model"):
            if (reuse / "results" / part).exists() and not (folder / "results" / part).exists():
                shutil.copytree(reuse / "results" / part, folder / "results" / part, symlinks=True)
    target = f"results/eval/{subject}/fidelity.json"
    started = time.perf_counter()
    with open(folder / "snakemake.log", "w") as log:
        subprocess.run([sys.executable, "-m", "snakemake", target, "-s", str(REPO / "Snakefile"), "--directory",
                        str(folder), "--configfile", str(folder / "config.yaml"), "--cores", str(cores),
                        "--resources", "gpu=1"], check=True, stdout=log, stderr=subprocess.STDOUT)
    return collect(folder, subject, time.perf_counter() - started)


def collect(folder: Path, subject: str, wall_s: float) -> dict:
    fidelity = json.loads((folder / f"results/eval/{subject}/fidelity.json").read_text())
    training = json.loads((folder / f"results/model/{subject}/training_summary.json").read_text())
    sampling = json.loads((folder / f"results/samples/{subject}/sampling_summary.json").read_text())
    return {"fidelity": fidelity, "wall_s": wall_s,
            "training": {k: training.get(k) for k in ("train_time_s", "steps", "chosen_step", "validation_denoising_error", "test_runs",
                                                       "heldout_denoising_error_ema", "device", "parameters")},
            "sampling_time_s": sampling["sampling_time_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", type=Path, default=REPO / "bench" / "ablation.yaml")
    parser.add_argument("--only", nargs="*", help="run these variants of the file only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ablation")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--cores", type=int, default=2, help="--cores of each workflow run")
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--select", action="store_true",
                        help="score on the development split (run 9 held out, runs 10-12 left out) to choose a variant")
    parser.add_argument("--summarise-only", action="store_true",
                        help="no runs: summarise the finished (variant, seed) folders already in --out")
    args = parser.parse_args()
    base = yaml.safe_load(args.configfile.read_text()) or {}
    base["subjects"] = [args.subject]
    base["stages"] = {**base.get("stages", {}), "decode": False, "anomalies": False}
    variants = yaml.safe_load(args.variants.read_text())
    if args.only:
        variants = {name: variants[name] for name in args.only}
    reuse = {name: overlay.pop("reuse_model_of", None) for name, overlay in variants.items()}
    if args.select:
        base = merge_config(base, {"prep": {"split": DEVELOPMENT_SPLIT}})
        for overlay in variants.values():
            if overlay.get("train", {}).get("validation_runs"):
                overlay["train"]["validation_runs"] = DEVELOPMENT_VALIDATION
    results: dict[str, dict[int, dict]] = {name: {} for name in variants}

    def job(name: str, seed: int) -> None:
        source = args.out / reuse[name] / f"seed-{seed}" if reuse[name] else None
        results[name][seed] = run_one(name, seed, merge_config(base, variants[name]), args.out, args.cores, args.subject, source)
        print(f"done {name} seed {seed}: {results[name][seed]['wall_s']:.0f} s", flush=True)

    # variants that reuse a model run after the ones they reuse
    first = [(n, s) for n in variants if not reuse[n] for s in args.seeds]
    later = [(n, s) for n in variants if reuse[n] for s in args.seeds]
    for batch in (first, later):
        if args.summarise_only:
            for name, seed in batch:
                if (args.out / name / f"seed-{seed}" / f"results/eval/{args.subject}/fidelity.json").exists():
                    results[name][seed] = collect(args.out / name / f"seed-{seed}", args.subject, float("nan"))
            continue
        with ThreadPoolExecutor(args.parallel) as pool:
            for future in [pool.submit(job, n, s) for n, s in batch]:
                future.result()
    results = {name: by_seed for name, by_seed in results.items() if by_seed}

    summary = {}
    for name, by_seed in results.items():
        fidelities = {seed: r["fidelity"] for seed, r in sorted(by_seed.items())}
        summary[name] = {
            # read from what the runs did (also right for --summarise-only)
            "scored_on_runs": sorted({run for r in by_seed.values() for run in r["training"]["test_runs"]}),
            "overlay": variants[name], "reuse_model_of": reuse[name], "seeds": sorted(by_seed),
            "measures": summarise(fidelities),
            "memorisation_ratio": describe([f["memorisation"]["ratio"] for f in fidelities.values()]),
            "train_time_s": describe([by_seed[s]["training"]["train_time_s"] for s in sorted(by_seed)]),
            "sampling_time_s": describe([by_seed[s]["sampling_time_s"] for s in sorted(by_seed)]),
            "training": {s: by_seed[s]["training"] for s in sorted(by_seed)},
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.md").write_text(markdown(summary) + "\n")
    print(markdown(summary))


def markdown(summary: dict) -> str:
    names = list(summary)
    first = summary[names[0]]["measures"]
    rows = ["| measure | " + " | ".join(names) + " | classical generator | real / ceiling | better is |",
            "|---|" + "---|" * len(names) + "---|---|---|"]
    for measure, entry in first.items():
        cells = [mean_sd(summary[n]["measures"][measure]["model"]) for n in names]
        rows.append(f"| {measure} | " + " | ".join(cells) + f" | {mean_sd(entry['gaussian_var1'])} | "
                    f"{entry['real_or_ceiling']:.3f} | {entry['better']} |")
    rows.append("| memorisation ratio (≥ 0.95) | " + " | ".join(mean_sd(summary[n]["memorisation_ratio"]) for n in names) + " | | 1 | closer |")
    rows.append("| training time (s) | " + " | ".join(mean_sd(summary[n]["train_time_s"]) for n in names) + " | | | |")
    rows.append("| sampling time (s) | " + " | ".join(mean_sd(summary[n]["sampling_time_s"]) for n in names) + " | | | |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
