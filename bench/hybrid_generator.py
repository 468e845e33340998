"""A hybrid generator (the generation issue's CorrDiff-style direction): the classical generator's
linear part (training-run category means + voxelwise AR(1)) with a diffusion model of what it leaves,
its standardised innovations, against the same linear part with Gaussian (Ledoit-Wolf) innovations
(the classical generator, ``gaussian_var1``) and the plain diffusion model.

    python bench/hybrid_generator.py --prep RESULTS/prep/sub001 --configfile RESULTS/../config.yaml \\
        --seeds 0 1 2 --out DIR [--plain FOLDER ...]

Per seed N:
1. ``LinearGaussianGenerator`` fitted on the prepared data's training runs; every volume turned into
   its standardised innovation (``innovations``): the volumes the diffusion model is trained on.
2. The diffusion model of ``--configfile`` (its ``train``, ``model`` and ``diffusion`` blocks,
   ``train.seed`` = N) trained by the workflow's ``train_subject`` on those innovations: the same
   training runs, clips, steps and split as the workflow.
3. Synthetic innovations along the held-out runs' label sequences (the ``sample`` block, ``sample.seed``
   = N; clips of the model's length stitched like the sample stage, ``runs_per_heldout_design`` sets),
   then the linear part put back through the AR(1) recursion (``from_innovations``), which carries the
   autocorrelation across clip boundaries.
4. Scored by ``evaluate_fidelity`` (seed N) on the original prepared data: a ``fidelity.json`` whose
   ``generator_baselines.gaussian_var1`` is the linear part with Gaussian innovations, sampled with the
   same seed; ``--plain`` folders (workflow runs of the plain model on the same split, ``seed-N``
   subfolders) add the plain diffusion model's numbers.

The comparison, stated before any run: the diffusion part adds to the linear part on a measure when
the paired difference (hybrid - gaussian_var1, same seed) points the favourable way beyond its sd
over the seeds. Run it on the development split (``bench/ablation.py --select`` folders: run 9 held
out, runs 10-12 absent) to decide; on the test runs it is a measurement.

Writes ``DIR/seed-N/`` (model, training log, synthetic NPZ, fidelity.json) and ``DIR/summary.json``,
``DIR/summary.md``.

``--whiten`` (2026-11-28, sixth session): the innovations are also ZCA-whitened with their Ledoit-Wolf
correlation (``LinearGaussianGenerator.innovations(whiten=True)``) before the model sees them, and
the model's samples coloured back. Why: the first hybrid's diffusion part lost connectivity (-0.125)
because its samples' spatial covariance was worse than the Ledoit-Wolf estimate; in whitened
coordinates a model that learns nothing gives back the classical generator exactly (for unit
Gaussian data the optimal v-prediction is 0, the untrained network's output), so the diffusion part
can only add what is not Gaussian, or lose by noise it learnt. ``--variance`` overrides
``sample.variance`` (``large``, the ancestral variance beta, is exact for unit Gaussian data;
``small`` under-disperses such data at 50 steps) and ``--tag`` names the outputs of one sampling
(``fidelity-TAG.json``, ``summary-TAG.*``) so one trained model per seed serves both.

Rule for the whitened arms, written before their first run: the arm sampled with ``large`` is the
candidate. It is a better generator than the classical one if, paired by seed, it is better beyond
the sd on at least one of connectivity, linear C2ST, RBF C2ST, MMD² and TSTR, and worse beyond the sd
on none of the realism measures nor the memorisation ratio; then (and only then) it is run on the
test runs (seeds 0-2) as a measurement. The ``small`` arm is reported, not chosen. Seeds 3-5 (the
development-split v models of bench/README section 22, for the plain model's column).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from modalmerge.analysis.fidelity import evaluate_fidelity  # noqa: E402
from modalmerge.analysis.generator_baselines import LinearGaussianGenerator  # noqa: E402
from modalmerge.config import merge_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import checkpoint_sampler, load_diffusion  # noqa: E402
from modalmerge.runtime import choose_device, inference_precision, model_autocast, usable_threads  # noqa: E402
from modalmerge.stages.report_summary import REALISM_MEASURES  # noqa: E402
from modalmerge.stages.sample import stitched_runs  # noqa: E402
from modalmerge.stages.train import train_subject  # noqa: E402
from seeds import describe, mean_sd  # noqa: E402

# the report's realism measures (model, generator and real/ceiling accessors of fidelity.json), and copying
MEASURES = {**REALISM_MEASURES,
            "memorisation ratio (>= 0.95)": (lambda f: f["memorisation"]["ratio"], lambda g: g["memorisation_ratio"],
                                             lambda f: 1.0, "higher")}


def innovation_data(data: PreparedData, linear: LinearGaussianGenerator, whiten: bool = False) -> PreparedData:
    """``data`` with every volume replaced by its standardised (``whiten``: whitened) innovation under
    ``linear`` (0 outside the mask)."""
    X = np.zeros_like(data.X)
    X[:, data.mask] = linear.innovations(data.X[:, data.mask], data.label_ids, data.runs, whiten=whiten)
    return dataclasses.replace(data, X=X, X_raw=None)


def sample_innovations(checkpoint: Path, run_labels: list[np.ndarray], sample_cfg: dict, threads: int) -> list[np.ndarray]:
    """Synthetic innovation runs along ``run_labels``, clips stitched as the sample stage does (overlap 0)."""
    torch.set_num_threads(usable_threads(threads))
    device = choose_device("auto")
    precision = inference_precision(device, sample_cfg.get("precision", "auto"))
    diffusion, meta = load_diffusion(checkpoint, device)
    sampler = checkpoint_sampler(meta, sample_cfg["sampler"], sample_cfg["steps"], sample_cfg["eta"], sample_cfg["variance"])
    generator = torch.Generator(device=device).manual_seed(sample_cfg["seed"])
    with model_autocast(device, precision):
        return stitched_runs(diffusion, sampler, run_labels, meta["config"]["model"]["clip_length"],
                             sample_cfg["guidance_scale"], sample_cfg["batch_size"], generator)[0]


def run_seed(data: PreparedData, split_path: Path, config: dict, seed: int, folder: Path, threads: int,
             whiten: bool = False, tag: str = "") -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    config = merge_config(config, {block: {"seed": seed} for block in ("train", "sample", "evaluate")})
    suffix = f"-{tag}" if tag else ""
    (folder / f"config{suffix}.yaml").write_text(yaml.safe_dump(config))
    mask, train = data.mask, ~data.is_test
    linear = LinearGaussianGenerator(seed).fit(data.X[train][:, mask], data.label_ids[train], data.runs[train])
    innovations = innovation_data(data, linear, whiten)
    innovations.save(folder / "innovations.npz")
    started = time.perf_counter()
    model = folder / "model.pt"
    if not model.exists():
        train_subject(folder / "innovations.npz", split_path, config,
                      {"model": model, "log": folder / "training_log.tsv", "summary": folder / "training_summary.json",
                       "checkpoint": folder / "checkpoint.pt"}, threads=threads, progress=False)
    trained = time.perf_counter() - started
    test = data.is_test
    designs = [run for _ in range(config["sample"]["runs_per_heldout_design"]) for run in data.test_runs]
    run_labels = [data.label_ids[test & (data.runs == run)] for run in designs]
    started = time.perf_counter()
    z_runs = sample_innovations(model, run_labels, config["sample"], threads)
    sampled = time.perf_counter() - started
    X = np.zeros((sum(len(r) for r in z_runs), *mask.shape), np.float32)
    segment = np.repeat(np.arange(len(z_runs)), [len(r) for r in z_runs])
    labels = np.concatenate(run_labels)
    X[:, mask] = linear.from_innovations(np.concatenate(z_runs)[:, mask], labels, segment, whiten=whiten)
    design_run = np.repeat(designs, [len(r) for r in z_runs])
    np.savez_compressed(folder / f"synthetic{suffix}.npz", X=X, label_ids=labels, design_run=design_run)
    synthetic = {"X": X, "label_ids": labels, "design_run": design_run,
                 "sampler": config["sample"]["sampler"], "guidance_scale": config["sample"]["guidance_scale"]}
    fidelity, _ = evaluate_fidelity(data, synthetic, seed=seed)
    real_z = innovations.X[train][:, mask]
    z = np.concatenate(z_runs)[:, mask]
    fidelity["hybrid"] = {
        "innovation_std_synthetic": float(z.std()), "innovation_std_training": float(real_z.std()),
        "train_s": trained, "sample_s": sampled, "whitened": whiten, "variance": config["sample"]["variance"],
        "note": "linear part (training category means + voxelwise AR(1)) with diffusion-model innovations; "
                "generator_baselines.gaussian_var1 is the same linear part with Gaussian innovations"}
    (folder / f"fidelity{suffix}.json").write_text(json.dumps(fidelity, indent=2, default=float))
    return fidelity


def summarise(per_seed: dict, plain: dict, out: Path, tag: str = "") -> dict:
    """Mean ± sd over seeds of every measure for the hybrid, the classical generator (the same linear
    part with Gaussian innovations), their paired difference and the plain model; writes
    ``summary[-tag].json`` and ``summary[-tag].md`` to ``out``."""
    fidelities = [per_seed[seed] for seed in sorted(per_seed)]
    plains = [plain[seed] for seed in sorted(per_seed) if seed in plain]
    summary = {"seeds": sorted(per_seed), "measures": {}}
    lines = ["| measure | hybrid | gaussian_var1 (same linear part, Gaussian innovations) | hybrid - gaussian_var1 (paired) "
             "| plain diffusion | real / ceiling | better is |", "|---|---|---|---|---|---|---|"]
    for name, (model_of, generator_of, real_of, better) in MEASURES.items():
        hybrid = [model_of(f) for f in fidelities]
        classical = [generator_of(f["generator_baselines"]["gaussian_var1"]) for f in fidelities]
        entry = {"hybrid": describe(hybrid), "gaussian_var1": describe(classical),
                 "difference": describe(np.subtract(hybrid, classical)),
                 # the held-out values are the same for every seed; ceilings depend on the evaluation seed
                 "real_or_ceiling": float(np.mean([real_of(f) for f in fidelities])), "better": better}
        if plains:
            entry["plain"] = describe([model_of(f) for f in plains])
        summary["measures"][name] = entry
        lines.append(f"| {name} | {mean_sd(entry['hybrid'])} | {mean_sd(entry['gaussian_var1'])} | "
                     f"{mean_sd(entry['difference'])} | {mean_sd(entry['plain']) if plains else '-'} | "
                     f"{entry['real_or_ceiling']:.3f} | {better} |")
    suffix = f"-{tag}" if tag else ""
    (out / f"summary{suffix}.json").write_text(json.dumps(summary, indent=2))
    (out / f"summary{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prep", required=True, type=Path, help="a prep folder holding volumes.npz and split.json")
    parser.add_argument("--configfile", required=True, type=Path, help="the full config of the run that prepared --prep")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--plain", type=Path, help="folder with seed-N/results/eval/SUBJECT/fidelity.json of the plain model")
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--whiten", action="store_true", help="ZCA-whiten the innovations (Ledoit-Wolf correlation)")
    parser.add_argument("--variance", choices=["small", "large"], help="override sample.variance")
    parser.add_argument("--tag", default="", help="suffix of this sampling's outputs (the model is trained once per seed)")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.configfile.read_text())
    if args.variance:
        config = merge_config(config, {"sample": {"variance": args.variance}})
    data = PreparedData.load(args.prep / "volumes.npz", with_raw=True)
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.copy(args.prep / "split.json", args.out / "split.json")
    per_seed, plain = {}, {}
    for seed in args.seeds:
        per_seed[seed] = run_seed(data, args.out / "split.json", config, seed, args.out / f"seed-{seed}", args.threads,
                                  args.whiten, args.tag)
        if args.plain is not None:
            path = args.plain / f"seed-{seed}" / "results" / "eval" / args.subject / "fidelity.json"
            if path.exists():
                plain[seed] = json.loads(path.read_text())
        summarise(per_seed, plain, args.out, args.tag)


if __name__ == "__main__":
    main()
