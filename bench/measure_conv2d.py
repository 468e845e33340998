"""The singleton-axis fast path of ``modalmerge.model.spatial.Conv3d`` against plain ``nn.Conv3d``
(oneDNN's 3D kernels) on the default model and slice grid, alternated in one process:

    python bench/measure_conv2d.py --repeats 6 --threads 2 --out bench/results/conv2d_slice.json

Times the network's forward at the sampler's batch (16 clips of 8 volumes) and a training step at the
default batch (4 clips); reports medians (first repeat dropped), the speed-ups and the largest
difference between the two paths' outputs (random non-zero weights, so no layer is trivially zero).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.config import validate_config  # noqa: E402
from modalmerge.diffusion.checkpoints import build_diffusion  # noqa: E402
from modalmerge.model import spatial  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = validate_config(yaml.safe_load((REPO / "config.yaml").read_text()))
    torch.manual_seed(0)
    grid = (37, 19, 1)
    diffusion = build_diffusion(config["model"], config["diffusion"], grid, 9, np.ones(grid, bool))
    for parameter in diffusion.network.parameters():
        parameter.data.normal_(0, 0.02)
    optimizer = torch.optim.AdamW(diffusion.network.parameters(), lr=1e-4)
    paths = {"conv3d": torch.nn.Conv3d.forward, "conv2d_fast_path": spatial.Conv3d.forward}
    x = torch.randn(16, 8, *grid)
    t = torch.full((16,), 500)
    labels = torch.randint(0, 9, (16, 8))

    def use(path: str) -> None:
        spatial.Conv3d.forward = paths[path]

    outputs = {}
    with torch.inference_mode():
        for path in paths:
            use(path)
            outputs[path] = diffusion.network(x, t, labels)
    times = {f"{kind}_{path}": [] for kind in ("forward", "step") for path in paths}
    for _ in range(args.repeats):
        for path in paths:
            use(path)
            started = time.perf_counter()
            with torch.inference_mode():
                diffusion.network(x, t, labels)
            times[f"forward_{path}"].append(time.perf_counter() - started)
            started = time.perf_counter()
            loss = diffusion(x[:4], labels[:4], torch.Generator().manual_seed(1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times[f"step_{path}"].append(time.perf_counter() - started)
    use("conv2d_fast_path")
    median = {key: float(np.median(values[1:])) for key, values in times.items()}
    result = {"median_s": median, "threads": args.threads, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "forward_speedup": median["forward_conv3d"] / median["forward_conv2d_fast_path"],
              "step_speedup": median["step_conv3d"] / median["step_conv2d_fast_path"],
              "max_abs_output_difference": float((outputs["conv2d_fast_path"] - outputs["conv3d"]).abs().max())}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
