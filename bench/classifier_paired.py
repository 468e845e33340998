"""The diffusion classifier against the block-averaged classical decoders on the same held-out blocks,
block by block: exact McNemar tests (a measurement; nothing is chosen).

    python bench/classifier_metric.py FOLDER [FOLDER ...] --test-measurement --pair-seeds 0 --out MEASUREMENT.json
    python bench/classifier_paired.py MEASUREMENT.json --out bench/results/classifier_paired_test.json

The decode stage of the sixth session did not store the diffusion classifier's per-block predictions
(since the seventh it does, with the same test in ``decoding.json``'s ``paired_tests``);
``bench/classifier_metric.py --test-measurement`` records them for each workflow folder. Here the
predictions of the workflow's metric at the workflow's pair seed (``decode.seed``) are checked against
the decode stage's accuracy (``results/decode/sub001/decoding.json``) before any test is made; the
block-averaged linear SVM and shrinkage LDA are refitted exactly as the decode stage fits them
(:func:`classifier_metric.classical_predictions`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from classifier_metric import classical_predictions  # noqa: E402
from modalmerge.analysis.decoding import mcnemar_exact  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402

CLASSICAL = {"linear_svm_block_averaged": "block_svm", "shrinkage_lda_block_averaged": "shrinkage_lda_block_averaged"}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """The package's exact McNemar test (``mcnemar_exact``), under this script's key names."""
    found = mcnemar_exact(correct_a, correct_b)
    return {"only_diffusion_right": found["only_this_right"], "only_classical_right": found["only_other_right"],
            "p_value": found["p_value"]}


def paired(measured: dict) -> dict:
    """One workflow folder's entry of the measurement: the workflow's classifier against the classical decoders."""
    folder = Path(measured["folder"])
    decode = yaml.safe_load((folder / "config.yaml").read_text())["decode"]
    stage = json.loads((folder / "results/decode/sub001/decoding.json").read_text())["decoders"]
    arm = next(a for a in measured["arms"][decode["diffusion_metric"]] if a["pair_seed"] == decode["seed"])
    predicted, truth = np.array(arm["predicted"]), np.array(measured["truth"])
    accuracy = float(np.mean(predicted == truth))
    if not np.isclose(accuracy, stage["diffusion_classifier"]["accuracy"]):
        raise SystemExit(f"{folder}: measured accuracy {accuracy} differs from the stage's "
                         f"{stage['diffusion_classifier']['accuracy']}")
    data = PreparedData.load(folder / "results/prep/sub001/volumes.npz")
    block_truth, classical = classical_predictions(data, data.train_runs, data.test_runs)
    if not np.array_equal(block_truth, truth):
        raise SystemExit(f"{folder}: block order differs between the classifier and the block averages")
    out = {"folder": str(folder), "metric": decode["diffusion_metric"], "n_blocks": len(truth),
           "diffusion_classifier": accuracy, "predicted": predicted.tolist(), "truth": truth.tolist()}
    for name, key in CLASSICAL.items():
        out[name] = {"accuracy": float(np.mean(classical[key] == truth)),
                     **mcnemar(predicted == truth, classical[key] == truth)}
        print(f"{folder.name}: diffusion {accuracy:.3f} vs {name} {out[name]['accuracy']:.3f}, McNemar p "
              f"{out[name]['p_value']:.3f} ({out[name]['only_diffusion_right']} vs {out[name]['only_classical_right']})")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("measurement", type=Path, help="the JSON of classifier_metric.py --test-measurement")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    runs = json.loads(args.measurement.read_text())["runs"]
    args.out.write_text(json.dumps([paired(run) for run in runs], indent=2))


if __name__ == "__main__":
    main()
