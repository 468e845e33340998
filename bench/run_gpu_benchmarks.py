"""GPU benchmarks: the real default training on CUDA (bf16 autocast on and off), sampling speed and
training throughput / peak GPU memory against MONAI. Run where a CUDA GPU is present:

    python bench/run_gpu_benchmarks.py --out bench/results

Needs the prepared default data (``results/prep/sub001``, made by ``snakemake results/prep/sub001/volumes.npz``)
and ``monai==1.6.1`` for the comparison rows. Writes gpu_*.tsv and gpu_machine.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run_benchmarks import measure, sampling_section  # noqa: E402


def real_training(prep: Path, work: Path, steps: int | None) -> pd.DataFrame:
    """train_subject on the default config and data, as the workflow runs it, on CUDA."""
    from modalmerge.config import validate_config
    from modalmerge.stages.train import train_subject
    config = validate_config(yaml.safe_load((HERE.parent / "config.yaml").read_text()))
    rows = []
    for amp in (True, False):
        cfg = {key: dict(config[key]) for key in ("model", "diffusion", "train")}
        cfg["train"].update(device="cuda", mixed_precision=amp)
        if steps:
            cfg["train"]["steps"] = steps
        out_dir = work / ("amp" if amp else "fp32")
        out = {name: str(out_dir / f"{name}.x") for name in ("model", "log", "summary", "checkpoint")}
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        summary = train_subject(prep / "volumes.npz", prep / "split.json", cfg, out, threads=4, progress=False)
        rows.append({"mixed_precision_bf16": amp, "steps": summary["steps"], "batch_clips": cfg["train"]["batch_size"],
                     "train_loop_s": round(summary["train_time_s"], 1), "wall_s": round(time.perf_counter() - started, 1),
                     "ms_per_step": round(1000 * summary["train_time_s"] / summary["steps"], 1),
                     "clips_per_s": round(summary["clips_per_s"], 1),
                     "peak_gpu_GiB": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3),
                     "heldout_error_ema": round(summary["heldout_denoising_error_ema"], 4),
                     "heldout_error_raw": round(summary["heldout_denoising_error_raw"], 4),
                     "final_train_loss": round(summary["final_loss"], 4), "checkpoint": out["model"]})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def throughput() -> pd.DataFrame:
    rows = []
    for grid, volumes in [((40, 20, 1), 32), ((40, 64, 64), 8), ((40, 64, 64), 32)]:
        clip = 8
        for amp in ({}, {"amp": True}):
            rows.append(measure(model="modalmerge", grid=grid, volumes=volumes, clip=clip, device="cuda", steps=20, **amp))
            rows.append(measure(model="monai", grid=grid, volumes=volumes, device="cuda", steps=20, **amp))
            print(rows[-2], rows[-1], sep="\n", flush=True)
    rows.append(measure(model="modalmerge", grid=(40, 64, 64), volumes=32, clip=8, device="cuda", amp=True,
                        checkpointing=True, steps=20))
    print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--prep", type=Path, default=Path("results/prep/sub001"))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--sections", nargs="+", default=["training_real", "sampling", "throughput"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("run_gpu_benchmarks.py needs a CUDA GPU; CPU figures come from run_benchmarks.py")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "gpu": torch.cuda.get_device_name(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        import monai
        meta["monai"] = monai.__version__
    except ImportError:
        meta["monai"] = "not installed"
    print(json.dumps(meta), flush=True)
    with tempfile.TemporaryDirectory() as work:
        checkpoint = None
        for section in args.sections:
            started = time.perf_counter()
            if section == "training_real":
                table = real_training(args.prep, Path(work), args.steps)
                checkpoint = Path(table["checkpoint"].iloc[0])
                table = table.drop(columns="checkpoint")
            elif section == "sampling":
                table = sampling_section(checkpoint or Path("results/model/sub001/model.pt"), "cuda", ddpm_batches=(1, 16))
            else:
                table = throughput()
            table.to_csv(args.out / f"gpu_{section}.tsv", sep="\t", index=False)
            print(f"\n## {section} ({time.perf_counter() - started:.0f} s)\n{table.to_string(index=False)}", flush=True)
    (args.out / "gpu_machine.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
