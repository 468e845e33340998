"""Anomaly types no detector was built or tuned for: does a detector of "not normal" see them?

    python bench/unseen_anomalies.py RESULTS [RESULTS ...] --out bench/results/unseen_anomalies

Each RESULTS is a finished workflow's ``results/`` folder (its ``prep/SUBJECT/volumes.npz`` and
``model/SUBJECT/model.pt``; one per training seed). The four types of
``modalmerge.analysis.anomalies.UNSEEN_TYPES`` (frozen frames, a Nyquist ghost, a k-space spike's
plane wave, scanner drift), at a mild and a strong strength fixed before any detector saw them, are
injected into the held-out runs' clips exactly as the workflow injects its own five types, and
every detector of the score stage (the diffusion detector with ``--configfile``'s anomaly settings)
is fitted on clean training-run clips and scored on them. Writes ``summary.json`` and
``summary.md`` (clip AUROC per type and strength, mean ± sd over the RESULTS given).
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
from modalmerge.analysis.anomalies import UNSEEN_TYPES, inject_anomalies  # noqa: E402
from modalmerge.config import load_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision  # noqa: E402
from modalmerge.stages.anomalies import score_detectors  # noqa: E402

# fixed before the first run: a mild and a strong setting of each type (the strong one is the "default")
STRENGTHS = {"frozen_frame": [1, 3], "ghost": [0.5, 1.0], "kspace_spike": [0.5, 1.0], "drift": [0.5, 1.0]}
assert set(STRENGTHS) == set(UNSEEN_TYPES)


def run(results: Path, subject: str, threads: int, config: dict) -> dict:
    torch.set_num_threads(threads)
    diffusion, meta = load_diffusion(results / "model" / subject / "model.pt")
    data = PreparedData.load(results / "prep" / subject / "volumes.npz", with_raw=True)
    clip_length = meta["config"]["model"]["clip_length"]
    injected = inject_anomalies(data.X, data.X_raw, data.runs, data.is_test, data.mask, clip_length, STRENGTHS,
                                config["seed"], config["blob_sigma"], config["radius"], config["duration"])
    config = {**config, "default_strengths": {k: max(v) for k, v in STRENGTHS.items()}}
    precision = inference_precision(diffusion.mask.device, meta["config"]["train"].get("inference_precision", "auto"))
    found, _ = score_detectors(injected, data, diffusion, config, diffusion.mask.device, precision)
    return {name: {kind: {strength: entry["by_strength"][kind][strength]["auroc"] for strength in entry["by_strength"][kind]}
                   for kind in entry["by_strength"]} for name, entry in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml",
                        help="the workflow configuration whose anomalies block (seed, sizes, diffusion detector) applies")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = load_config(args.configfile)["anomalies"]
    runs = [run(folder, args.subject, args.threads, config) for folder in args.results]
    detectors = list(runs[0])
    columns = [(kind, f"{s:g}") for kind in UNSEEN_TYPES for s in STRENGTHS[kind]]
    summary = {"results": [str(r) for r in args.results], "strengths": STRENGTHS,
               "auroc": {d: {f"{k} {s}": [r[d][k][s] for r in runs] for k, s in columns} for d in detectors}}
    cell = lambda v: f"{np.mean(v):.2f} ± {np.std(v, ddof=1):.2f}" if len(v) > 1 else f"{v[0]:.2f}"
    rows = ["| detector | " + " | ".join(f"{k} {s}" for k, s in columns) + " |", "|---|" + "---|" * len(columns)]
    rows += [f"| {d} | " + " | ".join(cell(summary["auroc"][d][f"{k} {s}"]) for k, s in columns) + " |" for d in detectors]
    text = "\n".join(rows)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (args.out / "summary.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
