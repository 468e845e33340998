"""Diffusion classifier: candidate pruning against plain averaging, read from one pass over the pairs.

    python bench/classifier_pruning.py MODEL.pt VOLUMES.npz [MODEL.pt VOLUMES.npz ...] --pairs 32 \
        --out bench/results/classifier_pruning.json

For every (model, prepared data) pair: the per-pair denoising errors of every candidate category on
the stimulus blocks of the model's held-out runs (``test_runs`` of its checkpoint) and, with
``--training-blocks``, of its training runs, for ``--pairs`` shared (timestep, noise) pairs, in the
workflow's inference precision. Because every candidate sees the same pairs, any schedule that uses
the first pairs can be read from that one array exactly:

- ``average k``: the workflow's classifier, the mean of the first k pairs, every candidate;
- ``prune k1 -> keep m -> k``: the first k1 pairs for every candidate, then only the m candidates
  with the lowest mean error go on to k pairs (the others are out); the lowest mean over k wins.

Per schedule: accuracy, network forward passes per block, and agreement with the 32-pair average
(which needs no labels). Run it on development-split models (trained on runs 1-8, run 9 held out),
which may choose; on the test runs it is a measurement only.
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
from modalmerge.runtime import inference_precision, model_autocast  # noqa: E402

SCHEDULES = [("average", 4, None, 4), ("average", 8, None, 8), ("average", 16, None, 16), ("average", 32, None, 32),
             ("prune", 4, 2, 8), ("prune", 4, 3, 8), ("prune", 4, 2, 16), ("prune", 4, 3, 16), ("prune", 8, 2, 16),
             ("prune", 8, 3, 16), ("prune", 4, 2, 32), ("prune", 8, 2, 32), ("prune", 8, 3, 32)]


def decide(errors: np.ndarray, first: int, keep: int | None, total: int) -> tuple[np.ndarray, float]:
    """Chosen candidate index per block and forward passes per block of one schedule."""
    n_candidates = errors.shape[1]
    if keep is None:
        return errors[:, :, :total].mean(axis=2).argmin(axis=1), float(n_candidates * total)
    early = errors[:, :, :first].mean(axis=2)
    kept = np.argsort(early, axis=1, kind="stable")[:, :keep]
    late = np.take_along_axis(errors[:, :, :total].mean(axis=2), kept, axis=1)
    return np.take_along_axis(kept, late.argmin(axis=1)[:, None], axis=1)[:, 0], float(n_candidates * first + keep * (total - first))


def name_of(kind, first, keep, total) -> str:
    return f"average {total}" if kind == "average" else f"prune {first} -> keep {keep} -> {total}"


def errors_on(diffusion, data, runs, clip_length, n_pairs, seed, precision, device):
    blocks = [b for b in stimulus_blocks(data.label_ids, data.runs, data.rest_id) if b[0] in runs]
    clips, design, target = block_clips(data.X, data.label_ids, data.runs, blocks, clip_length, data.rest_id)
    classifier = DiffusionClassifier(diffusion, list(range(data.rest_id)), n_pairs, seed=seed).fit()
    started = time.perf_counter()
    with model_autocast(device, precision):
        errors = classifier.pair_errors(clips, design, target)
    return errors, np.array([b[3] for b in blocks]), time.perf_counter() - started


def table(per_model: list[dict], split: str) -> dict:
    out = {}
    for kind, first, keep, total in SCHEDULES:
        if total > per_model[0]["pairs"]:
            continue
        accuracy, agreement, forwards = [], [], None
        for entry in per_model:
            errors, truth = entry[split]["errors"], entry[split]["truth"]
            chosen, forwards = decide(errors, first, keep, total)
            reference, _ = decide(errors, errors.shape[2], None, errors.shape[2])
            accuracy.append(float(np.mean(chosen == truth)))
            agreement.append(float(np.mean(chosen == reference)))
        out[name_of(kind, first, keep, total)] = {
            "forwards_per_block": forwards, "accuracy": accuracy, "accuracy_mean": float(np.mean(accuracy)),
            "agreement_with_full_average": agreement, "agreement_mean": float(np.mean(agreement))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs_of_files", type=Path, nargs="+", help="MODEL.pt VOLUMES.npz, repeated")
    parser.add_argument("--pairs", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="the classifier's pair seed (decode.seed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--training-blocks", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if len(args.pairs_of_files) % 2:
        parser.error("give MODEL.pt VOLUMES.npz pairs")
    torch.set_num_threads(args.threads)
    per_model, described = [], []
    for checkpoint, volumes in zip(args.pairs_of_files[::2], args.pairs_of_files[1::2]):
        diffusion, meta = load_diffusion(checkpoint)
        device = diffusion.mask.device
        precision = inference_precision(device, meta["config"]["train"].get("inference_precision", "auto"))
        data = PreparedData.load(volumes)
        clip_length = meta["config"]["model"]["clip_length"]
        entry, info = {"pairs": args.pairs}, {"checkpoint": str(checkpoint), "precision": precision}
        splits = [("heldout", meta["test_runs"])] + ([("training", meta["train_runs"])] if args.training_blocks else [])
        for split, runs in splits:
            errors, truth, seconds = errors_on(diffusion, data, runs, clip_length, args.pairs, args.seed, precision, device)
            entry[split] = {"errors": errors, "truth": truth}
            info[split] = {"runs": [int(r) for r in runs], "n_blocks": len(truth), "seconds": seconds,
                           "seconds_per_forward": seconds / errors.size}
        per_model.append(entry)
        described.append(info)
    result = {"pairs": args.pairs, "pair_seed": args.seed, "models": described,
              **{split: table(per_model, split) for split in per_model[0] if split != "pairs"}}
    for split in ("heldout", "training"):
        if split in result:
            print(f"\n{split} blocks ({sum(m[split]['n_blocks'] for m in described)} over {len(described)} models)")
            print("| schedule | forwards per block | accuracy (per model) | agreement with the 32-pair average |")
            print("|---|---|---|---|")
            for name, row in result[split].items():
                print(f"| {name} | {row['forwards_per_block']:.0f} | {row['accuracy_mean']:.3f} "
                      f"({', '.join(f'{a:.3f}' for a in row['accuracy'])}) | {row['agreement_mean']:.3f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
