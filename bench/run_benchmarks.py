"""Run the ModalMerge benchmarks on this machine and write bench/results/*.tsv and *.json.

    make bench              # all sections (about 15-25 minutes on 2 CPU cores)
    python bench/run_benchmarks.py --sections training sampling

Every ratio is measured in the same run, side by side (MONAI's DiffusionModelUNet for training
throughput; DDPM-1000 for DDIM), so a noisy shared machine still gives comparable ratios.
Needs ``pip install monai==1.6.1 einops`` (not a dependency of the package).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def measure(**kwargs) -> dict:
    args = [sys.executable, str(HERE / "measure_step.py")]
    for key, value in kwargs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        return {"model": kwargs["model"], "grid": "x".join(map(str, kwargs["grid"])), "error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def sgemm_peak(threads: int = 2, n: int = 2048, repeats: int = 5) -> float:
    """The machine's float32 matmul rate (GFLOP/s) in this run."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def training_section() -> pd.DataFrame:
    rows = []
    for grid, volumes in [((6, 10, 10), 32), ((40, 20, 1), 32), ((40, 64, 64), 2)]:
        clip = 8 if volumes >= 8 else volumes
        rows.append(measure(model="modalmerge", grid=grid, volumes=volumes, clip=clip))
        if volumes >= 8:  # at 40x64x64 the matched-parameter variant would take ~10 minutes more on 2 cores
            rows.append(measure(model="modalmerge", grid=grid, volumes=volumes, clip=clip, res_blocks=3))  # ~ matched parameters
        rows.append(measure(model="monai", grid=grid, volumes=volumes))
    return pd.DataFrame(rows)


def memory_section() -> pd.DataFrame:
    rows = [measure(model="modalmerge", grid=(40, 64, 64), volumes=2, clip=2),
            measure(model="modalmerge", grid=(40, 64, 64), volumes=2, clip=2, checkpointing=True)]
    return pd.DataFrame(rows)


def scaling_section() -> pd.DataFrame:
    rows = [measure(model="modalmerge", grid=g, volumes=8, clip=8) for g in [(6, 10, 10), (20, 32, 32), (40, 64, 64)]]
    rows += [measure(model="modalmerge", grid=(20, 32, 32), volumes=t, clip=t) for t in (4, 16)]
    return pd.DataFrame(rows)


def sampling_section(checkpoint: Path, device: str = "cpu", ddpm_batches=(1,)) -> pd.DataFrame:
    from modalmerge.diffusion.checkpoints import load_diffusion, scheduler_kwargs
    from modalmerge.diffusion.schedulers import make_sampler
    torch.set_num_threads(2)
    diffusion, meta = load_diffusion(checkpoint, torch.device(device))
    kwargs = scheduler_kwargs(meta["config"]["diffusion"])
    rows = []
    for batch in (1, 16):
        labels = torch.randint(0, 8, (batch, meta["config"]["model"]["clip_length"]), device=device)
        for name, steps in [("ddim", 25), ("ddim", 50), ("ddim", 100), ("ddpm", 1000)]:
            if name == "ddpm" and batch not in ddpm_batches:
                continue  # 1000 steps at batch 16 would take most of an hour on 2 cores
            # eta 0 (deterministic DDIM): eta does not change the cost; sample_std shows why the
            # pipeline samples with eta 1 (eta 0 over-disperses with this model)
            sampler = make_sampler(name, kwargs, steps if name == "ddim" else None)
            generator = torch.Generator(device=device).manual_seed(0)
            _synchronize(device)
            started = time.perf_counter()
            samples, _ = diffusion.sample(sampler, labels, 1.0, generator)
            _synchronize(device)
            seconds = time.perf_counter() - started
            inside = samples[..., diffusion.mask.bool()]
            rows.append({"sampler": f"{name}-{steps}", "batch_clips": batch, "device": device,
                         "s_per_clip": round(seconds / batch, 4),
                         "s_per_volume": round(seconds / batch / labels.shape[1], 5), "sample_std": round(float(inside.std()), 3)})
    table = pd.DataFrame(rows)
    ddpm = table[(table.sampler == "ddpm-1000")].set_index("batch_clips")["s_per_clip"]
    table["speedup_vs_ddpm1000"] = [round(ddpm.get(b, ddpm.iloc[0]) / s, 1) for b, s in zip(table.batch_clips, table.s_per_clip)]
    return table


def _synchronize(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", nargs="+", default=["training", "memory", "scaling", "sampling"])
    parser.add_argument("--checkpoint", type=Path, default=Path("results/model/sub001/model.pt"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "processor": platform.processor(),
            "threads": 2, "torch": torch.__version__, "sgemm_gflops": round(sgemm_peak(), 1)}
    try:
        import monai
        meta["monai"] = monai.__version__
    except ImportError:
        meta["monai"] = "not installed"
    for section in args.sections:
        started = time.perf_counter()
        table = sampling_section(args.checkpoint) if section == "sampling" else globals()[f"{section}_section"]()
        if "gflops_achieved" in table:
            table["fraction_of_sgemm_peak"] = (table["gflops_achieved"] / meta["sgemm_gflops"]).round(2)
        table.to_csv(RESULTS / f"{section}.tsv", sep="\t", index=False)
        print(f"\n## {section} ({time.perf_counter() - started:.0f} s)\n{table.to_string(index=False)}", flush=True)
    (RESULTS / "machine.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
