"""sample: synthetic fMRI from a trained checkpoint, following the held-out runs' design.

Writes synthetic runs as a 4D NIfTI in the source brain space (source affine), an NPZ of
volumes and labels, x_t snapshots along the reverse process (one clip per category), and the
model's attention maps (spatial, as NIfTI; temporal, as T x T matrices).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_file
from .diffusion import GaussianDiffusion
from .preprocessing import PreparedData
from .schedulers import make_sampler
from .training import build_diffusion, choose_device, load_checkpoint, scheduler_kwargs, usable_threads

log = logging.getLogger("modalmerge")


def load_diffusion(checkpoint_path: str | Path, device: torch.device | str = "cpu", use_ema: bool = True):
    """Rebuild the diffusion model of a checkpoint: ``(diffusion, metadata)`` (EMA weights by default)."""
    state = load_checkpoint(checkpoint_path, device)
    meta = state["metadata"]
    config = meta["config"]
    diffusion = build_diffusion(config["model"], config["diffusion"], meta["grid_shape"], len(meta["class_names"]),
                                state["model"]["mask"].cpu().numpy())
    diffusion.load_state_dict(state["model"])
    if use_ema:
        diffusion.network.load_state_dict(state["ema"])
    return diffusion.to(device).eval(), meta


def design_clips(run_labels: np.ndarray, clip_length: int) -> tuple[np.ndarray, list[slice]]:
    """Cover a run's label sequence with clips of ``clip_length``: ``(clip_labels (n, T), keep)``.

    Clips are consecutive; the last one is shifted back to end at the run's end, and
    ``keep[i]`` says which of its volumes are new (so the run is rebuilt without overlap).
    """
    n = len(run_labels)
    starts = list(range(0, n - clip_length + 1, clip_length))
    keep = [slice(0, clip_length)] * len(starts)
    if starts[-1] + clip_length < n:
        covered = starts[-1] + clip_length
        starts.append(n - clip_length)
        keep.append(slice(clip_length - (n - covered), clip_length))
    return np.stack([run_labels[s:s + clip_length] for s in starts]), keep


def sample_in_batches(diffusion: GaussianDiffusion, sampler, labels: np.ndarray, guidance_scale: float,
                      batch_size: int, generator: torch.Generator, snapshot_every: int | None = None):
    """Sample clips for ``labels`` (n, T) in batches: ``(samples (n, T, x, y, z), snapshots of the first batch)``."""
    device = diffusion.mask.device
    outputs, first_snapshots = [], None
    for start in range(0, len(labels), batch_size):
        batch = torch.as_tensor(labels[start:start + batch_size], dtype=torch.long, device=device)
        samples, snapshots = diffusion.sample(sampler, batch, guidance_scale, generator,
                                              snapshot_every if first_snapshots is None else None)
        if first_snapshots is None:
            first_snapshots = snapshots
        outputs.append(samples.cpu().numpy())
    return np.concatenate(outputs), first_snapshots


@torch.no_grad()
def attention_maps(diffusion: GaussianDiffusion, clips: np.ndarray, labels: np.ndarray, t: int = 100):
    """Attention of the bottleneck on (noised) clips: ``(spatial (n, x, y, z), temporal (n, T, T))``.

    spatial: attention each location receives from the others (bottleneck self-attention,
    mean over queries and frames), upsampled to the volume grid; temporal: the temporal
    transformer's T x T weights averaged over locations.
    """
    network = diffusion.network
    device = diffusion.mask.device
    x0 = torch.as_tensor(clips, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    t_batch = torch.full((len(x0),), t, device=device, dtype=torch.long)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    x_t = diffusion.scheduler.add_noise(x0, noise, t_batch)
    network.record_attention(True)
    try:
        network(x_t, t_batch, torch.as_tensor(labels, dtype=torch.long, device=device))
        spatial_w = network.middle_spatial.attention.last_weights  # (n*T, N, N)
        temporal_w = network.temporal.attention_weights()           # (n*N, T, T)
    finally:
        network.record_attention(False)
    n, length = x0.shape[:2]
    bottleneck = _bottleneck_grid(network)
    received = spatial_w.mean(dim=1).reshape(n, length, *bottleneck).mean(dim=1)  # (n, *bottleneck)
    upsampled = F.interpolate(received[:, None], size=network.padded_grid, mode="trilinear", align_corners=False)[:, 0]
    spatial = upsampled[(slice(None),) + tuple(slice(0, s) for s in network.grid_shape)].cpu().numpy()
    spatial = spatial * diffusion.mask.cpu().numpy()
    positions = int(np.prod(bottleneck))
    temporal = temporal_w.reshape(n, positions, length, length).mean(dim=1).cpu().numpy()
    return spatial.astype(np.float32), temporal.astype(np.float32)


def _bottleneck_grid(network) -> tuple[int, ...]:
    grid = network.padded_grid
    for _ in range(len(network.encoder) - 1):
        grid = tuple(n if n == 1 else n // 2 for n in grid)
    return grid


def sample_subject(checkpoint_path: str | Path, volumes_path: str | Path, sample_config: dict, out: dict,
                   device: str = "auto", threads: int = 1) -> dict:
    """sample for one subject; ``out`` keys: ``nifti``, ``npz``, ``snapshots``, ``attention_nifti``,
    ``attention_temporal``, ``summary``."""
    torch.set_num_threads(usable_threads(threads))
    device = choose_device(device)
    diffusion, meta = load_diffusion(checkpoint_path, device)
    data = PreparedData.load(volumes_path)
    clip_length = meta["config"]["model"]["clip_length"]
    class_names = meta["class_names"]
    sampler = make_sampler(sample_config["sampler"], scheduler_kwargs(meta["config"]["diffusion"]),
                           sample_config["steps"], sample_config["eta"])
    generator = torch.Generator(device=device).manual_seed(sample_config["seed"])
    guidance = sample_config["guidance_scale"]
    batch_size = sample_config["batch_size"]

    # 1. synthetic runs that follow the design (label sequence) of each held-out run
    run_volumes, run_labels, run_design = [], [], []
    started = time.perf_counter()
    n_clips = 0
    for repeat in range(sample_config["runs_per_heldout_design"]):
        for run in meta["test_runs"]:
            labels = data.label_ids[data.runs == run]
            clip_labels, keep = design_clips(labels, clip_length)
            clips, _ = sample_in_batches(diffusion, sampler, clip_labels, guidance, batch_size, generator)
            n_clips += len(clips)
            run_volumes.append(np.concatenate([clip[k] for clip, k in zip(clips, keep)]))
            run_labels.append(labels)
            run_design.append(np.full(len(labels), run))
    # 2. clips with one category throughout (also the diffusion-process snapshots)
    categories = np.arange(len(class_names) - 1)  # the last class is rest
    per_category = np.repeat(categories, sample_config["clips_per_category"])
    category_labels = np.repeat(per_category[:, None], clip_length, axis=1)
    category_clips = np.zeros((0, clip_length, *meta["grid_shape"]), np.float32)
    snapshots = []
    if len(per_category):
        order = np.argsort(np.tile(np.arange(sample_config["clips_per_category"]), len(categories)), kind="stable")
        # first batch holds one clip of every category, so its snapshots show each category's reverse process
        category_clips_sorted, snapshots = sample_in_batches(
            diffusion, sampler, category_labels[order], guidance, batch_size, generator, sample_config["snapshot_every"])
        category_clips = np.empty_like(category_clips_sorted)
        category_clips[order] = category_clips_sorted
        n_clips += len(category_clips)
    elapsed = time.perf_counter() - started

    synthetic = np.concatenate(run_volumes) if run_volumes else np.zeros((0, *meta["grid_shape"]), np.float32)
    synthetic_labels = np.concatenate(run_labels) if run_labels else np.zeros(0, int)
    design = np.concatenate(run_design) if run_design else np.zeros(0, int)

    with atomic_file(out["nifti"]) as tmp:
        nib.save(data.to_source_space(synthetic if len(synthetic) else category_clips.reshape(-1, *meta["grid_shape"])), tmp)
    with atomic_file(out["npz"]) as tmp:
        np.savez_compressed(
            tmp, X=synthetic, label_ids=synthetic_labels, labels=np.array(class_names)[synthetic_labels],
            design_run=design, category_clips=category_clips, category_clip_label_ids=per_category,
            class_names=np.array(class_names), mask=data.mask, affine=data.affine,
            sampler=sample_config["sampler"], steps=len(sampler.timesteps), guidance_scale=guidance,
            seed=sample_config["seed"])
    snap_t = np.array([t for t, _ in snapshots])
    snap_x = np.stack([x.cpu().numpy() for _, x in snapshots]) if snapshots else np.zeros((0,))
    n_shown = min(len(categories), snap_x.shape[1]) if snapshots else 0
    with atomic_file(out["snapshots"]) as tmp:
        np.savez_compressed(tmp, timesteps=snap_t, x_t=snap_x[:, :n_shown] if snapshots else snap_x,
                            label_ids=categories[:n_shown], class_names=np.array(class_names), mask=data.mask)
    # 3. attention maps on held-out-design samples of every category (mean per category)
    spatial, temporal = attention_maps(diffusion, category_clips, category_labels) if len(category_clips) else (None, None)
    spatial_per_category = np.stack([spatial[per_category == c].mean(axis=0) for c in categories]) if spatial is not None else np.zeros((0, *meta["grid_shape"]))
    temporal_per_category = np.stack([temporal[per_category == c].mean(axis=0) for c in categories]) if temporal is not None else np.zeros((0,))
    with atomic_file(out["attention_nifti"]) as tmp:
        nib.save(data.to_source_space(spatial_per_category.astype(np.float32)), tmp)
    with atomic_file(out["attention_temporal"]) as tmp:
        np.savez_compressed(tmp, temporal=temporal_per_category, label_ids=categories, class_names=np.array(class_names))
    summary = {
        "sampler": sample_config["sampler"], "steps": len(sampler.timesteps), "guidance_scale": guidance,
        "seed": sample_config["seed"], "device": str(device), "threads": torch.get_num_threads(),
        "n_clips": int(n_clips), "n_synthetic_volumes": int(len(synthetic) + category_clips.shape[0] * clip_length),
        "sampling_time_s": elapsed, "seconds_per_clip": elapsed / max(n_clips, 1),
        "synthetic_mean": float(synthetic[:, data.mask].mean()) if len(synthetic) else None,
        "synthetic_std": float(synthetic[:, data.mask].std()) if len(synthetic) else None,
        "real_heldout_std": float(data.X[data.is_test][:, data.mask].std()),
    }
    Path(out["summary"]).write_text(json.dumps(summary, indent=2))
    return summary
