"""The training step on the default slice data: eager against a CUDA graph, and against older code.

    python bench/measure_training_step.py --out step.json                  # this checkout
    python bench/measure_training_step.py --code /path/to/old/checkout --label main --out old.json

Each variant runs the workflow's own ``train_subject`` (default config, data of
``results/prep/sub001``) for ``--steps`` steps with a log row every 50; the steady time per step is
taken between step ``--skip`` and the last (the rows' ``wall_time_s`` is measured after a device
synchronisation), so start-up, cuDNN autotuning and the graph capture are left out. ``--check``
adds the numerical check of the captured step: 20 steps eager twice and with ``cuda_graph: auto``
(captured on one GPU) once from the same seed; the distance of the captured weights from the eager ones is reported beside the eager
run's distance from its own repeat (GPU kernels are not bitwise deterministic) and beside how far 19
steps moved the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml


def run(train_subject, validate_config, base: dict, prep: Path, work: Path, name: str, overrides: dict,
        steps: int, skip: int) -> dict:
    import pandas as pd
    import torch
    config = validate_config(base)
    cfg = {key: dict(config[key]) for key in ("model", "diffusion", "train")}
    cfg["train"].update(device="cuda" if torch.cuda.is_available() else "cpu", steps=steps, log_every=min(50, steps),
                        eval_every=steps, checkpoint_every=steps, **overrides)
    out_dir = work / name
    out = {key: str(out_dir / f"{key}.x") for key in ("model", "log", "summary", "checkpoint")}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = train_subject(prep / "volumes.npz", prep / "split.json", cfg, out, threads=4, progress=False)
    wall = time.perf_counter() - started
    log = pd.read_csv(out["log"], sep="\t")
    steady = log[log["step"] >= skip]
    ms = 1000 * (steady["wall_time_s"].iloc[-1] - steady["wall_time_s"].iloc[0]) / (steady["step"].iloc[-1] - steady["step"].iloc[0]) \
        if len(steady) > 1 else float("nan")
    row = {"variant": name, **{k: v for k, v in overrides.items()}, "steps": steps,
           "batch_clips": cfg["train"]["batch_size"], "steady_ms_per_step": round(ms, 2),
           "steady_clips_per_s": round(1000 * cfg["train"]["batch_size"] / ms, 1),
           "loop_s": round(summary["train_time_s"], 2), "call_s": round(wall, 1),
           "peak_gpu_GiB": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3) if torch.cuda.is_available() else None,
           "final_loss": round(float(summary["final_loss"]), 4), "checkpoint": out["checkpoint"]}
    print(json.dumps(row), flush=True)
    return row


def weights(path: str) -> dict:
    from modalmerge.diffusion.checkpoints import load_checkpoint
    state = load_checkpoint(path, "cpu")
    return {k: v.float() for k, v in state["model"].items() if v.is_floating_point()}


def distance(a: dict, b: dict) -> float:
    return float(sum(((a[k] - b[k]) ** 2).sum() for k in a) ** 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout whose modalmerge package and config.yaml are measured")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--prep", type=Path, default=Path("results/prep/sub001"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--skip", type=int, default=100)
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--graph", choices=["both", "none"], default="both",
                        help="both: train.cuda_graph off and on (needs code that has the key); none: the code as it is")
    parser.add_argument("--check", action="store_true", help="the numerical check of the captured step")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sys.path.insert(0, str(args.code.resolve()))
    from modalmerge.config import validate_config
    from modalmerge.stages.train import train_subject
    import torch
    base = yaml.safe_load((args.code / "config.yaml").read_text())
    prep = args.prep.resolve()
    rows, check = [], None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for batch in args.batches:
            graphs = ["off", "on"] if args.graph == "both" else [None]
            for graph in graphs:
                overrides = {"batch_size": batch, **({} if graph is None else {"cuda_graph": graph})}
                name = f"b{batch}" + ("" if graph is None else f"_graph_{graph}")
                rows.append(run(train_subject, validate_config, base, prep, work, name, overrides, args.steps, args.skip))
        if args.check:
            models = {}
            for name, overrides, steps in [("eager_a", {"cuda_graph": "off"}, 20), ("eager_b", {"cuda_graph": "off"}, 20),
                                           ("graph", {"cuda_graph": "auto"}, 20), ("eager_1", {"cuda_graph": "off"}, 1)]:
                models[name] = weights(run(train_subject, validate_config, base, prep, work, "check_" + name,
                                           overrides, steps, 0)["checkpoint"])
            moved = distance(models["eager_a"], models["eager_1"])
            check = {"steps": 20, "moved_steps_2_to_20": moved,
                     "graph_vs_eager": distance(models["graph"], models["eager_a"]),
                     "eager_repeat_vs_eager": distance(models["eager_b"], models["eager_a"])}
            check["graph_vs_eager_relative"] = check["graph_vs_eager"] / moved
            check["eager_repeat_relative"] = check["eager_repeat_vs_eager"] / moved
            print(json.dumps(check), flush=True)
    result = {"label": args.label, "code": str(args.code), "torch": torch.__version__,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "rows": [{k: v for k, v in row.items() if k != "checkpoint"} for row in rows], "check": check}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
