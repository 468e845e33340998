"""The diffusion classifier against the block-averaged classical decoders on the same held-out blocks,
block by block: exact McNemar tests (a measurement; nothing is chosen).

    python bench/classifier_paired.py FOLDER [FOLDER ...] --out bench/results/classifier_paired_test.json

Each folder is a workflow folder (``results/decode/sub001/decoding.json``, the model and the prepared
data). The decode stage does not store the diffusion classifier's per-block predictions, so they are
recomputed here with the workflow's settings (pairs, pruning, metric, pair seed, precision) and
checked against the stage's accuracy before any test is made; the block-averaged linear SVM and
shrinkage LDA are refitted exactly as the decode stage fits them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy.stats import binomtest

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from modalmerge.analysis.decoding import block_average, linear_svm, shrinkage_lda  # noqa: E402
from modalmerge.analysis.diffusion_decoding import DiffusionClassifier, block_samples  # noqa: E402
from modalmerge.data.clips import block_clips, stimulus_blocks  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast, usable_threads  # noqa: E402


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired correctness: the blocks only one of the two gets right."""
    only_a, only_b = int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_diffusion_right": only_a, "only_classical_right": only_b, "p_value": float(p)}


def paired(folder: Path, threads: int) -> dict:
    torch.set_num_threads(usable_threads(threads))
    decode = yaml.safe_load((folder / "config.yaml").read_text())["decode"]
    stage = json.loads((folder / "results/decode/sub001/decoding.json").read_text())["decoders"]
    diffusion, meta = load_diffusion(folder / "results/model/sub001/model.pt", "cpu")
    data = PreparedData.load(folder / "results/prep/sub001/volumes.npz")
    rest, clip_length = data.rest_id, meta["config"]["model"]["clip_length"]
    blocks = stimulus_blocks(data.label_ids, data.runs, rest)
    test = [b for b in blocks if b[0] in data.test_runs]
    train = [b for b in blocks if b[0] in data.train_runs]
    truth = np.array([b[3] for b in test])
    classifier = DiffusionClassifier(diffusion, list(range(rest)), decode["diffusion_pairs"], seed=decode["seed"],
                                     prune_after=decode["diffusion_prune_after"], keep=decode["diffusion_keep"],
                                     metric=decode["diffusion_metric"])
    precision = inference_precision(torch.device("cpu"), meta["config"]["train"].get("inference_precision", "auto"))
    with model_autocast(torch.device("cpu"), precision):
        if decode["diffusion_metric"] == "whitened":
            classifier.fit(block_samples(*block_clips(data.X, data.label_ids, data.runs, train, clip_length, rest)),
                           np.array([b[3] for b in train]))
        else:
            classifier.fit()
        predicted = classifier.predict_blocks(*block_clips(data.X, data.label_ids, data.runs, test, clip_length, rest))
    accuracy = float(np.mean(predicted == truth))
    if not np.isclose(accuracy, stage["diffusion_classifier"]["accuracy"]):
        raise SystemExit(f"{folder}: recomputed accuracy {accuracy} differs from the stage's "
                         f"{stage['diffusion_classifier']['accuracy']}")
    X = data.X[:, data.mask]
    category = data.label_ids != rest
    Xb, yb, rb = block_average(X[category], data.label_ids[category], data.runs[category])
    fit, held = np.isin(rb, data.train_runs), np.isin(rb, data.test_runs)
    if not np.array_equal(yb[held], truth):
        raise SystemExit(f"{folder}: block order differs between the classifier and the block averages")
    out = {"folder": str(folder), "metric": decode["diffusion_metric"], "n_blocks": len(truth),
           "diffusion_classifier": accuracy, "predicted": predicted.tolist(), "truth": truth.tolist()}
    for name, make in (("linear_svm_block_averaged", linear_svm), ("shrinkage_lda_block_averaged", shrinkage_lda)):
        classical = make().fit(Xb[fit], yb[fit]).predict(Xb[held])
        out[name] = {"accuracy": float(np.mean(classical == truth)),
                     **mcnemar(predicted == truth, classical == truth)}
        print(f"{folder.name}: diffusion {accuracy:.3f} vs {name} {out[name]['accuracy']:.3f}, McNemar p "
              f"{out[name]['p_value']:.3f} ({out[name]['only_diffusion_right']} vs {out[name]['only_classical_right']})")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps([paired(folder, args.threads) for folder in args.folders], indent=2))


if __name__ == "__main__":
    main()
