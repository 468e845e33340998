"""The diffusion classifier's timestep range under the whitened metric, on the development split (may choose).

    python bench/classifier_timesteps.py DEV_FOLDER [DEV_FOLDER ...] --pair-seeds 0 1 2 \\
        --out bench/results/classifier_timesteps_dev.json

Each folder is a development-split workflow folder (``bench/ablation.py --select``: the model trained on
runs 1-8, run 9 held out, runs 10-12 left out of every stage). Every arm classifies run 9's stimulus
blocks as the decode stage does (``decode.diffusion_pairs`` pairs, pruning, the whitened metric fitted
on the blocks of runs 1-8, the workflow's inference precision), with the pairs' timesteps drawn
uniformly from the arm's range instead of the default 100-599:

- ``t100-600``: the default (``DiffusionClassifier``'s ``t_range``, chosen for the squared residual);
- ``t300-900`` and ``t600-1000``: higher noise levels.

Why, written before the run: in the Gaussian limit (category means mu_c, shared covariance S) the
change a candidate label makes to the v-prediction residual is the change it makes to the model's
guess of x0, divided by sqrt(1 - abar_t); the residual's covariance is the posterior covariance of
x0 given x_t over (1 - abar_t). Judged in the residual's own metric (the whitened comparison) the
evidence per pair is dmu' S^-1 C_t S^-1 dmu with C_t the posterior covariance, which grows with t to
the full Mahalanobis separation dmu' S^-1 dmu when x_t says nothing about x0: at the highest noise
levels the whitened diffusion classifier becomes a Mahalanobis nearest-mean classifier on the model's
own category means, the decoder that reaches 90.3 % leave-one-run-out over runs 1-9 with the
training means (bench/README section 27). The default range was chosen for the squared residual,
where low noise levels matter for other reasons. Whether the trained network's category means are
good enough for this is what the run measures.

Rule, written before the first run: an arm replaces the default range (``decode.diffusion_t_range``)
if, per model (mean over the pair seeds), its accuracy minus the default's has mean > sd over the
models and the true category's mean rank is not worse on average; of several, the one with the
largest mean gain. Otherwise the default stays. Models: the seven development-split v models of
``bench/classifier_metric.py``'s choice (seeds 0-2 of bench/README section 14, 3-6 of section 21).
The test runs 10-12 are never read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from classifier_metric import classical, model_and_blocks, true_rank  # noqa: E402
from modalmerge.analysis.diffusion_decoding import DiffusionClassifier  # noqa: E402
from modalmerge.runtime import model_autocast  # noqa: E402
from seeds import describe, mean_sd  # noqa: E402

ARMS = {"t100-600": (100, 600), "t300-900": (300, 900), "t600-1000": (600, 1000)}
DEFAULT = "t100-600"


def run_model(folder: Path, pair_seeds: list[int], threads: int) -> dict:
    found = model_and_blocks(folder, threads)  # refuses models that saw runs 10-12
    decode, diffusion, meta, data, precision = (found["config"]["decode"], found["diffusion"], found["meta"], found["data"],
                                                found["precision"])
    clips, design, target, truth = (found[k] for k in ("clips", "design", "target", "truth"))
    fit_samples, fit_truth, rest = found["fit_samples"], found["fit_truth"], data.rest_id
    out = {"folder": str(folder), "test_runs": meta["test_runs"], "n_blocks": len(truth),
           "classical": classical(data, meta["train_runs"], meta["test_runs"]), "arms": {arm: [] for arm in ARMS},
           "truth": truth.tolist()}
    for pair_seed in pair_seeds:
        for arm, t_range in ARMS.items():
            classifier = DiffusionClassifier(diffusion, list(range(rest)), decode["diffusion_pairs"], t_range=t_range,
                                             seed=pair_seed, prune_after=decode["diffusion_prune_after"],
                                             keep=decode["diffusion_keep"], metric="whitened")
            started = time.perf_counter()
            with model_autocast(torch.device("cpu"), precision):
                classifier.fit(fit_samples, fit_truth)
                errors = classifier.pair_errors(clips, design, target)
            predicted = classifier.classes_[classifier.candidate_errors(errors).argmin(axis=1)]
            ranks = true_rank(errors, np.searchsorted(classifier.classes_, truth), decode["diffusion_prune_after"])
            out["arms"][arm].append({"pair_seed": pair_seed, "accuracy": float(np.mean(predicted == truth)),
                                     "mean_true_rank": float(ranks.mean()), "predicted": predicted.tolist(),
                                     "seconds": time.perf_counter() - started})
            print(f"{folder.parent.name}/{folder.name} pair seed {pair_seed} {arm}: accuracy "
                  f"{out['arms'][arm][-1]['accuracy']:.3f}, true rank {ranks.mean():.2f}, "
                  f"{out['arms'][arm][-1]['seconds']:.0f} s", flush=True)
    return out


def summarise(runs: list[dict]) -> dict:
    per_model = {arm: {key: [np.mean([r[key] for r in run["arms"][arm]]) for run in runs]
                       for key in ("accuracy", "mean_true_rank")} for arm in ARMS}
    summary = {arm: {key: describe(values) for key, values in per_model[arm].items()} for arm in ARMS}
    gains = {}
    for arm in ARMS:
        if arm == DEFAULT:
            continue
        gains[arm] = {key: describe(np.subtract(per_model[arm][key], per_model[DEFAULT][key]))
                      for key in ("accuracy", "mean_true_rank")}
    summary["minus_default"] = gains
    summary["classical"] = {name: describe([run["classical"][name] for run in runs])
                            for name in ("block_svm", "shrinkage_lda", "shrinkage_lda_block_averaged",
                                         "nearest_mean_euclidean", "nearest_mean_mahalanobis")}
    passing = [arm for arm, g in gains.items() if g["accuracy"]["sd"] is not None
               and g["accuracy"]["mean"] > g["accuracy"]["sd"] and g["mean_true_rank"]["mean"] <= 0]
    summary["adopted"] = max(passing, key=lambda arm: gains[arm]["accuracy"]["mean"], default=None)
    lines = [f"{arm}: accuracy {mean_sd(summary[arm]['accuracy'])}, true rank {mean_sd(summary[arm]['mean_true_rank'])}"
             for arm in ARMS]
    lines += [f"{arm} - {DEFAULT}: accuracy {mean_sd(g['accuracy'])}, true rank {mean_sd(g['mean_true_rank'])}"
              for arm, g in gains.items()]
    lines += [f"{name}: {mean_sd(entry)}" for name, entry in summary["classical"].items()]
    lines.append(f"adopted: {summary['adopted']}")
    print("\n".join(lines), flush=True)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--pair-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    runs = []
    for folder in args.folders:
        runs.append(run_model(folder, args.pair_seeds, args.threads))
        result = {"pair_seeds": args.pair_seeds, "arms": {k: list(v) for k, v in ARMS.items()}, "runs": runs,
                  "summary": summarise(runs), "rules": __doc__}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
