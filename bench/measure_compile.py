"""Does ``torch.compile`` make the trained model's inference forward cheaper on this CPU, and does it
pay for its compile time within one stage? (the speed issue's "compiled step")

    python bench/measure_compile.py MODEL.pt [--batch 32] [--repeats 10] [--threads 2]

Loads a trained checkpoint, runs the denoiser's forward on random clips of its shape at ``--batch``
clips (the detector's and classifier's batch), timestep 200, under the workflow's inference precision
(bf16 autocast where the CPU computes bf16 natively), eager and compiled (inductor, default mode and
``max-autotune-no-cudagraphs``), and prints one JSON object: the first call's seconds (compile
included), the median seconds of ``--repeats`` later calls, and the largest absolute difference of
the compiled output from the eager one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast  # noqa: E402


def timed_calls(forward, inputs, repeats: int) -> tuple[float, float, torch.Tensor]:
    started = time.perf_counter()
    out = forward(*inputs)
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        forward(*inputs)
        times.append(time.perf_counter() - started)
    return first, statistics.median(times), out.float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["default", "max-autotune-no-cudagraphs"])
    parser.add_argument("--precision", default="auto", help="auto (the workflow's), float32 or bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    diffusion, meta = load_diffusion(args.model, device)
    network = diffusion.network.eval()
    precision = inference_precision(device, args.precision)
    T = meta["config"]["model"]["clip_length"]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((args.batch, T, *diffusion.mask.shape), generator=generator)
    t = torch.full((args.batch,), 200, dtype=torch.long)
    labels = torch.randint(0, 8, (args.batch, T), generator=generator)

    def under_precision(fn):
        def call(*inputs):
            with torch.no_grad(), model_autocast(device, precision):
                return fn(*inputs)
        return call

    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "threads": args.threads,
              "batch": args.batch, "precision": precision}
    first, median, reference = timed_calls(under_precision(network), (x, t, labels), args.repeats)
    result["eager"] = {"first_s": first, "median_s": median}
    for mode in args.modes:
        torch._dynamo.reset()
        compiled = torch.compile(network, mode=mode, dynamic=False)
        first, median, out = timed_calls(under_precision(compiled), (x, t, labels), args.repeats)
        result[mode] = {"first_s": first, "median_s": median, "speedup": result["eager"]["median_s"] / median,
                        "max_abs_difference": float((out - reference).abs().max()),
                        "reference_std": float(reference.std())}
        print(json.dumps({mode: result[mode]}), flush=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
