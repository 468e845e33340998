"""The diffusion classifier's metric: the plain squared residual against its Mahalanobis norm under
the residual covariance of training blocks (``DiffusionClassifier(metric="whitened")``), on the
development split (may choose).

    python bench/classifier_metric.py DEV_FOLDER [DEV_FOLDER ...] --pair-seeds 0 1 2 \\
        --out bench/results/classifier_metric_dev.json
    python bench/classifier_metric.py --loro VOLUMES.npz --out bench/results/classifier_metric_loro.json
    python bench/classifier_metric.py WORKFLOW_FOLDER [...] --test-measurement --pair-seeds 0 --out OUT.json

Each folder is a development-split workflow folder (``bench/ablation.py --select``: the model trained
on runs 1-8, run 9 held out, runs 10-12 left out of every stage). Both arms classify run 9's stimulus
blocks exactly as the decode stage does (``decode.diffusion_pairs`` pairs, pruning
``decode.diffusion_prune_after`` -> ``decode.diffusion_keep``, the workflow's inference precision),
once per pair seed (the shared (timestep, noise) pairs; the workflow's is ``decode.seed`` = 0);
``whitened`` fits its metric on the blocks of runs 1-8 (one noise draw per block and pair: 64 x 16 forward
passes, about twice the classification's 8 x 56). Beside
them, on the same blocks: the block-averaged linear SVM (the decode stage's), a shrinkage LDA fitted
on the training volumes, and the nearest category mean with a Euclidean and with a Mahalanobis
(Ledoit-Wolf) distance.

Why (leave-one-run-out over runs 1-9, nothing from runs 10-12; ``--loro``,
``bench/results/classifier_metric_loro.json``): the nearest category mean decides 55.6 % of blocks
with a Euclidean distance and 90.3 % with a Mahalanobis one (shrinkage LDA 88.9 %, block SVM 69.4 %).
The diffusion classifier's squared residual is a Euclidean comparison of what the model expects
under each category; the voxels' correlated noise is what it ignores. (The figures first written
here, 76.3 / 94.1 / 94.8 / 91.9 %, came from a quick check that took label 0, a category, for rest
and classified rest blocks instead of category 0's; corrected after the run, with the same
conclusion. The rule below was not touched.)

Rule, written before the first run: ``whitened`` becomes the decode stage's default
(``decode.diffusion_metric``) if, per model (the mean over the pair seeds), its block accuracy minus
the plain metric's has mean > sd over the models, and the true category's mean rank (1 = first; a
candidate pruned early is ranked after the kept ones, by its early error) is not worse on average.
Otherwise the default stays and ``whitened`` remains an option. Models: the seven development-split
v models at hand (seeds 0-2 of bench/README section 14's v reproduction, 3-6 of section 21's
confirmation), all of the default config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.covariance import LedoitWolf

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from modalmerge.analysis.decoding import block_average, linear_svm, shrinkage_lda  # noqa: E402
from modalmerge.analysis.diffusion_decoding import DiffusionClassifier, block_samples  # noqa: E402
from modalmerge.data.clips import block_clips, stimulus_blocks  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast, usable_threads  # noqa: E402
from seeds import describe, mean_sd  # noqa: E402

ARMS = ("euclidean", "whitened")


def true_rank(errors: np.ndarray, truth_index: np.ndarray, prune_after: int | None) -> np.ndarray:
    """Rank (1 = best) of the true candidate per block: kept candidates by their mean over all pairs,
    then pruned ones by their mean over the first ``prune_after`` pairs."""
    kept = ~np.isnan(errors).any(axis=2)
    early = errors[:, :, :prune_after].mean(axis=2) if prune_after else errors.mean(axis=2)
    full = np.where(kept, np.nan_to_num(errors.mean(axis=2)), np.inf)
    ranks = []
    for b, c in enumerate(truth_index):
        order = sorted(range(errors.shape[1]), key=lambda k: (not kept[b, k], full[b, k] if kept[b, k] else early[b, k]))
        ranks.append(order.index(c) + 1)
    return np.array(ranks)


def classical_predictions(data: PreparedData, train_runs, test_runs) -> tuple[np.ndarray, dict]:
    """The classical decoders' predictions for run(s) ``test_runs``' stimulus blocks (block averages),
    fitted on ``train_runs``: ``(true categories, {decoder: predicted categories})``."""
    mask, rest = data.mask, data.rest_id
    X = data.X[:, mask]
    train = np.isin(data.runs, train_runs) & (data.label_ids != rest)
    test = np.isin(data.runs, test_runs) & (data.label_ids != rest)
    Xb, yb, _ = block_average(X[train], data.label_ids[train], data.runs[train])
    Xt, yt, _ = block_average(X[test], data.label_ids[test], data.runs[test])
    classes = np.unique(data.label_ids[train])
    means = np.stack([X[train & (data.label_ids == c)].mean(0) for c in classes])
    residual = X[train] - means[np.searchsorted(classes, data.label_ids[train])]
    precision = LedoitWolf().fit(residual).precision_
    diff = Xt[:, None] - means[None]
    return yt, {"block_svm": linear_svm().fit(Xb, yb).predict(Xt),
                "shrinkage_lda": shrinkage_lda().fit(X[train], data.label_ids[train]).predict(Xt),
                "shrinkage_lda_block_averaged": shrinkage_lda().fit(Xb, yb).predict(Xt),
                "nearest_mean_euclidean": classes[(diff ** 2).sum(-1).argmin(1)],
                "nearest_mean_mahalanobis": classes[np.einsum("bcv,vw,bcw->bc", diff, precision, diff).argmin(1)]}


def classical(data: PreparedData, train_runs, test_runs) -> dict:
    """The classical decoders' accuracies on run(s) ``test_runs``' stimulus blocks, fitted on ``train_runs``."""
    truth, predicted = classical_predictions(data, train_runs, test_runs)
    return {**{name: float(np.mean(p == truth)) for name, p in predicted.items()}, "n_blocks": int(len(truth))}


def classical_loro(data: PreparedData, runs=tuple(range(1, 10))) -> dict:
    """:func:`classical` with each of ``runs`` held out in turn and the others trained on (never 10-12)."""
    if set(runs) & {10, 11, 12}:
        raise SystemExit("leave-one-run-out here runs over the training runs 1-9 only.")
    folds = {run: classical(data, [r for r in runs if r != run], [run]) for run in runs}
    names = ("block_svm", "shrinkage_lda", "shrinkage_lda_block_averaged", "nearest_mean_euclidean",
             "nearest_mean_mahalanobis")
    summary = {name: describe([folds[run][name] for run in runs]) for name in names}
    for name in names:
        print(f"{name}: {mean_sd(summary[name])}")
    return {"runs": list(runs), "folds": folds, "summary": summary}


def model_and_blocks(folder: Path, threads: int, test_measurement: bool = False) -> dict:
    """A workflow folder's model and the stimulus blocks the decode stage would form: the held-out runs'
    (``clips``, ``design``, ``target``, ``truth``) and the training runs' for the whitened metric's fit
    (``fit_samples``, ``fit_truth``), with the folder's config, the model's metadata, the prepared data
    and the inference precision. Runs 10-12 are refused unless ``test_measurement``."""
    torch.set_num_threads(usable_threads(threads))
    config = yaml.safe_load((folder / "config.yaml").read_text())
    diffusion, meta = load_diffusion(folder / "results" / "model" / "sub001" / "model.pt", "cpu")
    data = PreparedData.load(folder / "results" / "prep" / "sub001" / "volumes.npz")
    if set(meta["train_runs"]) & {10, 11, 12} or (set(meta["test_runs"]) & {10, 11, 12} and not test_measurement):
        raise SystemExit(f"{folder}: the model's runs include 10-12; this script chooses on the development split only "
                         "(--test-measurement measures a choice already made, on workflow folders of the test split).")
    precision = inference_precision(torch.device("cpu"), meta["config"]["train"].get("inference_precision", "auto"))
    clip_length, rest = meta["config"]["model"]["clip_length"], data.rest_id
    all_blocks = stimulus_blocks(data.label_ids, data.runs, rest)
    blocks = [b for b in all_blocks if b[0] in meta["test_runs"]]
    fit_blocks = [b for b in all_blocks if b[0] in meta["train_runs"]]
    clips, design, target = block_clips(data.X, data.label_ids, data.runs, blocks, clip_length, rest)
    return {"config": config, "diffusion": diffusion, "meta": meta, "data": data, "precision": precision,
            "clips": clips, "design": design, "target": target, "truth": np.array([b[3] for b in blocks]),
            "fit_samples": block_samples(*block_clips(data.X, data.label_ids, data.runs, fit_blocks, clip_length, rest)),
            "fit_truth": np.array([b[3] for b in fit_blocks])}


def run_model(folder: Path, pair_seeds: list[int], threads: int, test_measurement: bool = False) -> dict:
    found = model_and_blocks(folder, threads, test_measurement)
    config, diffusion, meta, data, precision = (found[k] for k in ("config", "diffusion", "meta", "data", "precision"))
    clips, design, target, truth = (found[k] for k in ("clips", "design", "target", "truth"))
    fit_samples, fit_truth = found["fit_samples"], found["fit_truth"]
    decode, rest = config["decode"], data.rest_id
    out = {"folder": str(folder), "train_seed": config["train"]["seed"], "precision": precision,
           "test_runs": meta["test_runs"], "n_blocks": len(truth), "n_fit_blocks": len(fit_truth),
           "classical": classical(data, meta["train_runs"], meta["test_runs"]), "arms": {arm: [] for arm in ARMS}}
    for pair_seed in pair_seeds:
        for arm in ARMS:
            classifier = DiffusionClassifier(diffusion, list(range(rest)), decode["diffusion_pairs"], seed=pair_seed,
                                             prune_after=decode["diffusion_prune_after"], keep=decode["diffusion_keep"],
                                             metric=arm)
            started = time.perf_counter()
            with model_autocast(torch.device("cpu"), precision):
                classifier.fit(fit_samples, fit_truth) if arm == "whitened" else classifier.fit()
                fitted = time.perf_counter() - started
                errors = classifier.pair_errors(clips, design, target)
            predicted = classifier.classes_[classifier.candidate_errors(errors).argmin(axis=1)]
            ranks = true_rank(errors, np.searchsorted(classifier.classes_, truth), decode["diffusion_prune_after"])
            out["arms"][arm].append({"pair_seed": pair_seed, "accuracy": float(np.mean(predicted == truth)),
                                     "mean_true_rank": float(ranks.mean()), "predicted": predicted.tolist(),
                                     "fit_s": fitted, "seconds": time.perf_counter() - started})
            print(f"{folder.name} pair seed {pair_seed} {arm}: accuracy {out['arms'][arm][-1]['accuracy']:.3f}, "
                  f"true rank {ranks.mean():.2f}, {out['arms'][arm][-1]['seconds']:.0f} s", flush=True)
    out["truth"] = truth.tolist()
    return out


def summarise(runs: list[dict]) -> dict:
    """Per model the mean over pair seeds, then mean ± sd over models, paired whitened - euclidean, and the rule."""
    per_model = {arm: {key: [np.mean([r[key] for r in run["arms"][arm]]) for run in runs]
                       for key in ("accuracy", "mean_true_rank")} for arm in ARMS}
    summary = {arm: {key: describe(values) for key, values in per_model[arm].items()} for arm in ARMS}
    difference = {key: describe(np.subtract(per_model["whitened"][key], per_model["euclidean"][key]))
                  for key in ("accuracy", "mean_true_rank")}
    summary["whitened_minus_euclidean"] = difference
    summary["classical"] = {name: describe([run["classical"][name] for run in runs])
                            for name in ("block_svm", "shrinkage_lda", "nearest_mean_euclidean", "nearest_mean_mahalanobis")}
    accuracy, rank = difference["accuracy"], difference["mean_true_rank"]
    summary["adopt_whitened"] = bool(accuracy["sd"] is not None and accuracy["mean"] > accuracy["sd"] and rank["mean"] <= 0)
    summary["rule"] = ("whitened becomes the default if, per model averaged over pair seeds, its accuracy minus the plain "
                       "metric's has mean > sd over models and the true category's mean rank is not worse on average")
    lines = [f"{arm}: accuracy {mean_sd(summary[arm]['accuracy'])}, true rank {mean_sd(summary[arm]['mean_true_rank'])}"
             for arm in ARMS]
    lines.append(f"whitened - euclidean: accuracy {mean_sd(accuracy)}, true rank {mean_sd(rank)}")
    lines += [f"{name}: {mean_sd(entry)}" for name, entry in summary["classical"].items()]
    print("\n".join(lines))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--loro", type=Path, help="volumes.npz: only the classical decoders, leave-one-run-out over runs 1-9")
    parser.add_argument("--pair-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test-measurement", action="store_true",
                        help="workflow folders of the test split (runs 10-12 held out): both metrics measured side by side "
                             "on the same models, nothing chosen (the rule's verdict is not printed)")
    args = parser.parse_args(argv)
    if args.loro:
        args.out.write_text(json.dumps(classical_loro(PreparedData.load(args.loro)), indent=2, default=float))
        return
    runs = []
    for folder in args.folders:
        runs.append(run_model(folder, args.pair_seeds, args.threads, args.test_measurement))
        summary = summarise(runs)
        if args.test_measurement:
            summary.pop("adopt_whitened")
            summary["rule"] = "a measurement on the test runs: nothing is chosen here (the choice was made on the development split)"
        result = {"pair_seeds": args.pair_seeds, "runs": runs, "summary": summary}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
