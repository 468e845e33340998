"""The diffusion classifier on single volumes, beside the per-volume linear SVM (issue 16, item 1).

    python bench/classifier_volumes.py MODEL.pt VOLUMES.npz [MODEL.pt VOLUMES.npz ...] \
        --out bench/results/classifier_volumes.json

The workflow's diffusion classifier decides a stimulus block from a clip around it (temporal context,
the block's onset known). Here each category volume of the model's held-out runs is classified
alone: a clip of ``clip_length`` copies of that one volume (no neighbour, no onset), every frame
labelled with each candidate in turn, the denoising error over all frames compared, with the
workflow's schedule (``decode.diffusion_pairs`` shared (timestep, noise) pairs, candidate pruning
``decode.diffusion_prune_after`` -> ``decode.diffusion_keep``, pair seed ``decode.seed``, the
workflow's inference precision). A static clip is outside what the model saw in training (real clips
change from frame to frame); that is the price of using no context, and the number says what it costs.

Beside it, on exactly the same volumes: the project's per-volume linear SVM (``linear_svm()``) and
shrinkage LDA (``shrinkage_lda()``, the strongest classical decoder here) trained on the category volumes
of the model's training runs (LDA added in the fifteenth session, before that session's run). Per model: both accuracies, the permutation p of
the diffusion classifier (held-out labels shuffled within runs against its fixed predictions, 1000
times; no refit exists for a pretrained generative classifier) and an exact McNemar test of the two
on the same volumes. Nothing is chosen here: the schedule is the workflow's, so this may run on the
test runs as a measurement.

The candidates are compared in the workflow's metric (``decode.diffusion_metric``, over
``decode.diffusion_t_range``). With ``whitened`` the residual covariance per pair timestep is fitted,
as the decode stage fits it on training blocks, on static clips of training-run category volumes: as
many as there are held-out volumes, drawn with ``decode.seed`` (fixed before the first whitened run,
to bound the fit's cost at that of the classification's first pairs).
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
from scipy.stats import binomtest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.analysis.decoding import fixed_predictions_null, linear_svm, permutation_p_value, shrinkage_lda  # noqa: E402
from modalmerge.analysis.diffusion_decoding import DiffusionClassifier  # noqa: E402
from modalmerge.config import validate_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast  # noqa: E402


def static_clips(volumes: np.ndarray, clip_length: int) -> np.ndarray:
    """``(n, clip_length, x, y, z)``: each volume repeated along time."""
    return np.repeat(volumes[:, None], clip_length, axis=1)


def exact_mcnemar(right: np.ndarray, other_right: np.ndarray) -> float:
    """Exact two-sided McNemar p of two classifiers' right/wrong on the same items (1 when they never differ)."""
    first, second = int(np.sum(right & ~other_right)), int(np.sum(~right & other_right))
    return float(binomtest(first, first + second, 0.5).pvalue) if first + second else 1.0


def classify_volumes(diffusion, meta: dict, data: PreparedData, decode: dict) -> dict:
    clip_length = meta["config"]["model"]["clip_length"]
    device = diffusion.mask.device
    precision = inference_precision(device, meta["config"]["train"].get("inference_precision", "auto"))
    test = np.isin(data.runs, meta["test_runs"]) & (data.label_ids != data.rest_id)
    train = np.isin(data.runs, meta["train_runs"]) & (data.label_ids != data.rest_id)
    truth, runs = data.label_ids[test], data.runs[test]
    clips = static_clips(data.X[test].astype(np.float32), clip_length)
    design = np.zeros(clips.shape[:2], np.int64)
    frames = np.ones(clips.shape[:2], bool)
    metric = decode["diffusion_metric"]
    classifier = DiffusionClassifier(diffusion, list(range(data.rest_id)), decode["diffusion_pairs"], seed=decode["seed"],
                                     t_range=tuple(decode["diffusion_t_range"]), metric=metric,
                                     prune_after=decode["diffusion_prune_after"], keep=decode["diffusion_keep"])
    started = time.perf_counter()
    with model_autocast(device, precision):
        if metric == "whitened":  # the training runs' volumes only, never the held-out ones
            fit = np.sort(np.random.default_rng(decode["seed"]).choice(np.flatnonzero(train), int(test.sum()), replace=False))
            fit_clips = static_clips(data.X[fit].astype(np.float32), clip_length)
            classifier.fit(list(zip(fit_clips, np.zeros(fit_clips.shape[:2], np.int64), np.ones(fit_clips.shape[:2], bool))),
                           data.label_ids[fit])
        else:
            classifier.fit()
        fit_seconds = time.perf_counter() - started
        predicted = classifier.predict_blocks(clips, design, frames)
    seconds = time.perf_counter() - started - fit_seconds
    X_train, X_test = data.X[train][:, data.mask], data.X[test][:, data.mask]
    svm = linear_svm().fit(X_train, data.label_ids[train]).predict(X_test)
    lda = shrinkage_lda().fit(X_train, data.label_ids[train]).predict(X_test)
    right, svm_right, lda_right = predicted == truth, svm == truth, lda == truth
    rng = np.random.default_rng(decode["seed"])
    null = fixed_predictions_null(predicted, truth, runs, 1000, rng)
    only_diffusion, only_svm = int(np.sum(right & ~svm_right)), int(np.sum(~right & svm_right))
    mcnemar = exact_mcnemar(right, svm_right)
    return {"test_runs": [int(r) for r in meta["test_runs"]], "n_volumes": int(test.sum()), "precision": precision,
            "forwards_per_volume": classifier.forwards_per_block(), "seconds": seconds, "metric": metric,
            "metric_fit_seconds": fit_seconds if metric == "whitened" else 0.0,
            "diffusion_accuracy": float(right.mean()), "diffusion_p_value": permutation_p_value(null, float(right.mean())),
            "svm_accuracy": float(svm_right.mean()), "only_diffusion_right": only_diffusion, "only_svm_right": only_svm,
            "mcnemar_p_value": float(mcnemar), "chance": 1 / data.rest_id,
            "lda_accuracy": float(lda_right.mean()), "only_diffusion_right_vs_lda": int(np.sum(right & ~lda_right)),
            "only_lda_right": int(np.sum(~right & lda_right)), "mcnemar_p_value_vs_lda": exact_mcnemar(right, lda_right),
            "by_run": {int(r): {"diffusion": float(right[runs == r].mean()), "svm": float(svm_right[runs == r].mean()),
                                "lda": float(lda_right[runs == r].mean())} for r in np.unique(runs)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs_of_files", type=Path, nargs="+", help="MODEL.pt VOLUMES.npz, repeated")
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml", help="its decode block: the schedule")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if len(args.pairs_of_files) % 2:
        parser.error("give MODEL.pt VOLUMES.npz pairs")
    torch.set_num_threads(args.threads)
    decode = validate_config(yaml.safe_load(args.configfile.read_text()))["decode"]  # with the schema's defaults
    models = []
    for checkpoint, volumes in zip(args.pairs_of_files[::2], args.pairs_of_files[1::2]):
        diffusion, meta = load_diffusion(checkpoint)
        data = PreparedData.load(volumes)
        if not np.array_equal(diffusion.mask.cpu().numpy().reshape(data.mask.shape), data.mask):
            raise SystemExit(f"{volumes}: its brain mask is not the one {checkpoint} was trained with")
        if sorted(data.test_runs) != sorted(meta["test_runs"]):
            raise SystemExit(f"{volumes}: held-out runs {data.test_runs} are not the model's {meta['test_runs']}")
        result = {"checkpoint": str(checkpoint), "train_seed": meta["config"]["train"]["seed"],
                  **classify_volumes(diffusion, meta, data, decode)}
        models.append(result)
        print(f"{checkpoint}: diffusion {result['diffusion_accuracy']:.3f} (p {result['diffusion_p_value']:.3f}), "
              f"SVM {result['svm_accuracy']:.3f}, only diffusion right {result['only_diffusion_right']}, only SVM "
              f"{result['only_svm_right']} (McNemar p {result['mcnemar_p_value']:.3g}); LDA {result['lda_accuracy']:.3f} "
              f"(McNemar p {result['mcnemar_p_value_vs_lda']:.3g}); {result['seconds']:.0f} s", flush=True)
    accuracies = np.array([m["diffusion_accuracy"] for m in models])
    summary = {"diffusion_mean": float(accuracies.mean()),
               "diffusion_sd": float(accuracies.std(ddof=1)) if len(models) > 1 else 0.0,
               "svm": [m["svm_accuracy"] for m in models], "lda": [m["lda_accuracy"] for m in models]}
    print(json.dumps(summary))
    if args.out:
        args.out.write_text(json.dumps({"schedule": {k: decode[k] for k in (
            "diffusion_pairs", "diffusion_prune_after", "diffusion_keep", "seed", "diffusion_metric", "diffusion_t_range")},
                                        "models": models, "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
