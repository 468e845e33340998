"""What training adds to the diffusion detector: the workflow's detector on the untrained model
(``untrained_diffusion`` in ``auc.json``) over several noise-draw seeds, against trained models.

    python bench/untrained_control.py RESULTS --trained SEEDS/seed-*/results/anomalies/sub001/auc.json \
        --draw-seeds 0 1 2 --out bench/results/untrained_control.json

RESULTS is a finished workflow's ``results/`` folder: its ``prep/SUBJECT/volumes.npz``, its
``anomalies/SUBJECT/injected.npz`` and any ``model/SUBJECT/model.pt`` of the configuration (only its
schedule and mask are used: the untrained model's output is 0 whatever the weights). The detector is
the score stage's (``anomalies`` block of ``--configfile``: t_start, steps, draws, the same calibration
clips), its noise draws seeded with each ``--draw-seeds`` value (the workflow uses ``anomalies.seed``).
Each ``--trained`` auc.json is a workflow run on the same injected clips with the default draws; the
paired difference (trained minus the control with the same draws) is reported per file. Chooses
nothing; the clips are the test runs' (the score stage's own).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.analysis.diffusion_detector import untrained_control  # noqa: E402
from modalmerge.config import load_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast  # noqa: E402
from modalmerge.stages.anomalies import (calibration_clips, detector_inputs, fit_and_score_diffusion,  # noqa: E402
                                         workflow_diffusion_detector)


def load_inputs(results: Path, subject: str, config: dict) -> tuple:
    """A finished workflow's trained model and what the score stage gives its detector: ``(diffusion,
    detector inputs, injected clips, mask, calibration clips)``, read once."""
    diffusion, _ = load_diffusion(results / "model" / subject / "model.pt")
    data = PreparedData.load(results / "prep" / subject / "volumes.npz")
    with np.load(results / "anomalies" / subject / "injected.npz") as npz:
        injected = {k: npz[k] for k in npz.files}
    inputs = detector_inputs(injected, data)
    return diffusion, inputs, injected, data.mask, calibration_clips(len(inputs[0]), config)


def draw_aurocs(model, inputs, injected, mask, calibration, config: dict, draw_seeds: list[int],
                precision: str = "float32") -> dict[int, dict]:
    """Pooled and per-type AUROC (and blob voxel AUPRC) of the workflow's detector on ``model``, by
    noise-draw seed, its forwards in ``precision``."""
    out = {}
    for seed in draw_seeds:
        detector = workflow_diffusion_detector(mask, model, config)
        detector.seed = seed
        with model_autocast(torch.device("cpu"), precision):
            out[seed] = summary_of(fit_and_score_diffusion(detector, inputs, injected, mask, calibration, config)[0])
    return out


def summary_of(entry: dict) -> dict:
    return {"pooled": entry["auroc"], **{kind: e["auroc"] for kind, e in entry["by_type"].items()},
            "blob_voxel_auprc": entry["by_type"]["blob"].get("voxel_auprc")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--trained", type=Path, nargs="*", default=[])
    parser.add_argument("--draw-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--trained-draws", action="store_true",
                        help="also score RESULTS' own trained model over the same draw seeds (the workflow's "
                             "detector and inference precision): how much one draw moves the number auc.json reports")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    full_config = load_config(args.configfile)
    config = full_config["anomalies"]
    diffusion, *scored = load_inputs(args.results, args.subject, config)
    controls = draw_aurocs(untrained_control(diffusion), *scored, config, args.draw_seeds)
    trained = {str(path): summary_of(json.loads(path.read_text())["detectors"]["diffusion"]) for path in args.trained}
    same_draws = controls.get(config["seed"])
    keys = list(next(iter(controls.values())))
    describe = lambda values: {"mean": float(np.mean(values)), "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None}
    summary = {"untrained_by_draw_seed": controls, "trained": trained,
               "untrained": {k: describe([c[k] for c in controls.values()]) for k in keys},
               "trained_mean_sd": {k: describe([t[k] for t in trained.values()]) for k in keys} if trained else None,
               "trained_by_draw_seed": (draw_aurocs(diffusion, *scored, config, args.draw_seeds, inference_precision(
                   torch.device("cpu"), full_config["train"]["inference_precision"])) if args.trained_draws else None),
               "trained_minus_untrained_same_draws": ({k: describe([t[k] - same_draws[k] for t in trained.values()]) for k in keys}
                                                      if trained and same_draws else None)}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
