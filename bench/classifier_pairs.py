"""Diffusion classifier: accuracy against the number of (timestep, noise) pairs, and against the
timestep range, from one pass over the pairs (the first k pairs of one draw of ``--pairs``).

    python bench/classifier_pairs.py results/model/sub001/model.pt results/prep/sub001/volumes.npz \
        --pairs 32 --out bench/results/classifier_pairs.json

Blocks of the held-out runs (test runs: a measurement, it chooses nothing) and, with
``--training-blocks``, of the training runs the model was trained on (optimistic: the model has
seen them). Reports accuracy per k, seconds of model time per pair, and accuracy when only pairs of
a lower or upper timestep range are kept.
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
sys.path.insert(0, str(REPO))
from modalmerge.analysis.diffusion_decoding import DiffusionClassifier  # noqa: E402
from modalmerge.data.clips import block_clips, stimulus_blocks  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402


def curve(diffusion, data, runs, clip_length: int, n_pairs: int, seed: int) -> dict:
    blocks = [b for b in stimulus_blocks(data.label_ids, data.runs, data.rest_id) if b[0] in runs]
    clips, design, target = block_clips(data.X, data.label_ids, data.runs, blocks, clip_length, data.rest_id)
    truth = np.array([b[3] for b in blocks])
    classifier = DiffusionClassifier(diffusion, list(range(data.rest_id)), n_pairs, seed=seed).fit()
    started = time.perf_counter()
    errors = classifier.pair_errors(clips, design, target)  # (blocks, categories, pairs)
    seconds = time.perf_counter() - started
    t, _ = classifier.pairs(clips.shape[1:])

    def accuracy_of(pairs) -> float:  # the classifier that averages the chosen pairs only
        return float(np.mean(errors[:, :, pairs].mean(axis=2).argmin(axis=1) == truth))

    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= n_pairs]
    accuracy = {k: accuracy_of(slice(0, k)) for k in ks}
    middle = int(np.median(t.numpy()))
    low, high = t.numpy() < middle, t.numpy() >= middle
    by_range = {f"t < {middle} ({int(low.sum())} pairs)": accuracy_of(low),
                f"t >= {middle} ({int(high.sum())} pairs)": accuracy_of(high)}
    return {"runs": [int(r) for r in runs], "n_blocks": len(blocks), "accuracy_by_pairs": accuracy,
            "accuracy_by_timestep_range": by_range, "seconds": seconds, "seconds_per_pair": seconds / n_pairs,
            "chance": 1 / data.rest_id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("volumes", type=Path)
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--training-blocks", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    diffusion, meta = load_diffusion(args.checkpoint)
    data = PreparedData.load(args.volumes)
    clip_length = meta["config"]["model"]["clip_length"]
    result = {"checkpoint": str(args.checkpoint), "pairs": args.pairs, "seed": args.seed,
              "heldout": curve(diffusion, data, meta["test_runs"], clip_length, args.pairs, args.seed)}
    if args.training_blocks:
        result["training"] = curve(diffusion, data, meta["train_runs"], clip_length, args.pairs, args.seed)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
