"""Measure one training configuration in a fresh process: step time, throughput, peak memory, FLOPs.

    python bench/measure_step.py --model modalmerge --grid 40 20 1 --volumes 32 --clip 8

Prints one JSON line. Run by bench/run_benchmarks.py, one process per configuration, so that the
peak RSS (ru_maxrss) belongs to that configuration alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def modalmerge_step(grid, volumes, clip, channels, res_blocks, checkpointing, device, autocast):
    from modalmerge.diffusion.gaussian import GaussianDiffusion
    from modalmerge.model import SpatioTemporalDenoiser
    from modalmerge.diffusion.schedulers import Scheduler
    network = SpatioTemporalDenoiser(grid, clip, 9, channels=channels, res_blocks=res_blocks,
                                     gradient_checkpointing=checkpointing)
    diffusion = GaussianDiffusion(network, Scheduler(1000), torch.ones(grid)).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    clips = max(volumes // clip, 1)
    x0 = torch.randn(clips, clip, *grid, device=device)
    labels = torch.randint(0, 9, (clips, clip), device=device)

    def step():
        with autocast():
            loss = diffusion(x0, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network, step, clips * clip


def monai_step(grid, volumes, channels, res_blocks, device, autocast):
    from monai.networks.nets import DiffusionModelUNet
    from monai.networks.schedulers import DDPMScheduler
    factor = 2 ** (len(channels) - 1)
    padded = tuple(-(-n // factor) * factor for n in grid)  # MONAI's 3D UNet needs every axis divisible
    network = DiffusionModelUNet(spatial_dims=3, in_channels=1, out_channels=1, channels=channels,
                                 attention_levels=(False,) * (len(channels) - 2) + (True, True),
                                 num_res_blocks=res_blocks, num_head_channels=32, norm_num_groups=32).to(device)
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    x0 = torch.randn(volumes, 1, *padded, device=device)

    def step():
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (volumes,), device=device)
        with autocast():
            prediction = network(scheduler.add_noise(x0, noise, t), timesteps=t)
        loss = torch.nn.functional.mse_loss(prediction.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return network, step, volumes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["modalmerge", "monai"], required=True)
    parser.add_argument("--grid", type=int, nargs=3, required=True)
    parser.add_argument("--volumes", type=int, required=True, help="volumes per step (clips x T for modalmerge)")
    parser.add_argument("--clip", type=int, default=8)
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--res-blocks", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA)")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)

    if args.model == "modalmerge":
        network, step, n_volumes = modalmerge_step(tuple(args.grid), args.volumes, args.clip, args.channels,
                                                   args.res_blocks, args.checkpointing, device, autocast)
    else:
        network, step, n_volumes = monai_step(tuple(args.grid), args.volumes, args.channels, args.res_blocks,
                                              device, autocast)
    with FlopCounterMode(display=False) as counter:
        step()  # also the warm-up step
    for _ in range(3 if cuda else 0):  # cuDNN autotuning and allocator warm-up
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.steps):
        started = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    seconds = sorted(times)[len(times) // 2]
    print(json.dumps({
        "model": args.model, "grid": "x".join(map(str, args.grid)), "volumes_per_step": n_volumes,
        "clip": args.clip if args.model == "modalmerge" else 1, "channels": "/".join(map(str, args.channels)),
        "res_blocks": args.res_blocks, "checkpointing": args.checkpointing, "device": args.device, "amp_bf16": args.amp,
        "parameters_M": round(sum(p.numel() for p in network.parameters()) / 1e6, 2),
        "s_per_step": round(seconds, 3), "volumes_per_s": round(n_volumes / seconds, 2),
        "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2),
        **({"peak_gpu_GiB": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)} if cuda else {}),
        "gflop_per_step": round(counter.get_total_flops() / 1e9, 1),
        "gflops_achieved": round(counter.get_total_flops() / 1e9 / seconds, 1),
    }))


if __name__ == "__main__":
    main()
