"""Stage runner of sample: synthetic fMRI from a trained checkpoint, following the held-out runs' design.

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
from nilearn.signal import clean

from ..analysis.attention import attention_maps, attention_selectivity, temporal_attention_lags
from ..analysis.generator_baselines import component_temporal_correlation, within_category_covariance
from ..analysis.residual_dynamics import ResidualColouring
from ..atomic import atomic_file
from ..data.clips import covering_clips, make_clips
from ..data.dataset import PreparedData
from ..diffusion.checkpoints import checkpoint_sampler, load_diffusion
from ..diffusion.gaussian import GaussianDiffusion
from ..diffusion.sequences import sample_sequences, window_starts
from ..runtime import choose_device, inference_precision, model_autocast, usable_threads

log = logging.getLogger("modalmerge")
# sample.residual_dynamics -> what ResidualColouring.colour does to each component (its variance, whether it is
# first made white in time)
COLOUR_OPTIONS = {"coloured": {"variance": "kept"}, "matched": {"variance": "matched"},
                  "redistributed": {"variance": "redistributed"}, "whitened": {"variance": "matched", "whiten": True},
                  "matched_after": {"variance": "matched_after"}, "run_matched": {"variance": "run_matched"}}


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


def stitched_runs(diffusion: GaussianDiffusion, sampler, run_labels: list[np.ndarray], clip_length: int,
                  guidance_scale: float, batch_size: int, generator: torch.Generator) -> tuple[list[np.ndarray], int]:
    """Synthetic runs along ``run_labels`` (one label sequence per run), each covered by independently
    sampled clips stitched without overlap (:func:`~modalmerge.data.clips.covering_clips`):
    ``(runs (n_volumes, x, y, z) each, number of clips sampled)``."""
    runs, n_clips = [], 0
    for labels in run_labels:
        clip_labels, keep = covering_clips(labels, clip_length)
        clips, _ = sample_in_batches(diffusion, sampler, clip_labels, guidance_scale, batch_size, generator)
        n_clips += len(clips)
        runs.append(np.concatenate([clip[k] for clip, k in zip(clips, keep)]))
    return runs, n_clips


def sample_subject(checkpoint_path: str | Path, volumes_path: str | Path, sample_config: dict, out: dict,
                   device: str = "auto", threads: int = 1, precision: str = "float32") -> dict:
    """sample for one subject; ``out`` keys: ``nifti``, ``npz``, ``snapshots``, ``attention_nifti``,
    ``attention_temporal``, ``summary`` and (optional) ``interpretability``. The sampler's forward
    passes run in ``precision`` (see :func:`~modalmerge.runtime.inference_precision`); the attention
    maps in float32."""
    torch.set_num_threads(usable_threads(threads))
    device = choose_device(device)
    precision = inference_precision(device, precision)
    diffusion, meta = load_diffusion(checkpoint_path, device)
    data = PreparedData.load(volumes_path)
    clip_length = meta["config"]["model"]["clip_length"]
    class_names = meta["class_names"]
    sampler = checkpoint_sampler(meta, sample_config["sampler"], sample_config["steps"], sample_config["eta"],
                                 sample_config["variance"])
    prior = None
    fit = np.isin(data.runs, meta["train_runs"])  # what the sampler's prior and the colouring are fitted on
    X_fit, labels_fit = data.X[fit][:, data.mask], data.label_ids[fit]
    if sample_config["variance"] == "gaussian_posterior":  # the training runs' covariance, never the held-out runs'
        covariance = within_category_covariance(X_fit, labels_fit)
        prior = {"covariance": "Ledoit-Wolf, within category", "runs": [int(r) for r in meta["train_runs"]],
                 "n_volumes": int(fit.sum()), "frames": sample_config["posterior_frames"]}
        if sample_config["posterior_frames"] == "correlated":
            variances, basis = np.linalg.eigh(covariance)
            temporal = component_temporal_correlation(X_fit, labels_fit, data.runs[fit], basis, clip_length)
            sampler.set_gaussian_prior(data.mask, covariance, temporal, basis)
            prior["lag1_correlation_variance_weighted"] = float((temporal[:, 0, 1] * variances).sum() / variances.sum())
        else:
            sampler.set_gaussian_prior(data.mask, covariance)
    generator = torch.Generator(device=device).manual_seed(sample_config["seed"])
    guidance = sample_config["guidance_scale"]
    batch_size = sample_config["batch_size"]

    with model_autocast(device, precision):  # the sampler's forward passes only
        # 1. synthetic runs that follow the design (label sequence) of each held-out run
        started = time.perf_counter()
        overlap = sample_config["overlap"]
        designs = [run for _ in range(sample_config["runs_per_heldout_design"]) for run in meta["test_runs"]]
        run_labels = [data.label_ids[data.runs == run] for run in designs]
        run_design = [np.full(len(labels), run) for run, labels in zip(designs, run_labels)]
        if overlap == 0:  # independent clips, stitched
            run_volumes, n_clips = stitched_runs(diffusion, sampler, run_labels, clip_length, guidance, batch_size, generator)
        else:  # every run generated coherently, window by window, all runs of one length together
            n_clips = 0
            by_design = {}
            for length in sorted({len(labels) for labels in run_labels}):
                group = [i for i, labels in enumerate(run_labels) if len(labels) == length]
                runs = sample_sequences(diffusion, sampler, np.stack([run_labels[i] for i in group]), clip_length, overlap,
                                        guidance, generator, batch_size)
                n_clips += len(group) * len(window_starts(length, clip_length, overlap))
                by_design.update(zip(group, runs))
            run_volumes = [by_design[i] for i in range(len(designs))]
        # 2. clips with one category throughout (also the diffusion-process snapshots)
        categories = np.arange(data.rest_id)
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
    dynamics = {"method": sample_config["residual_dynamics"]}
    if sample_config["residual_dynamics"] != "none" and run_volumes:  # fitted on the training runs only
        colouring = ResidualColouring(max_lag=clip_length - 1).fit(X_fit, labels_fit, data.runs[fit])
        training = [data.X[data.runs == r][:, data.mask] for r in meta["train_runs"]]
        inside = [run[:, data.mask] for run in run_volumes]
        lag1 = {"training_runs": colouring.residual_lag1(training, [data.label_ids[data.runs == r] for r in meta["train_runs"]]),
                "sampled": colouring.residual_lag1(inside, run_labels)}
        inside = colouring.colour(inside, run_labels, **COLOUR_OPTIONS[sample_config["residual_dynamics"]])
        for run, coloured in zip(run_volumes, inside):
            run[:, data.mask] = coloured
        lag1["coloured"] = colouring.residual_lag1(inside, run_labels)
        dynamics.update(max_lag=clip_length - 1, residual_lag1_variance_weighted=lag1)

    if sample_config["standardize_runs"]:  # nilearn's z-scoring of each real run in mask-and-normalize, voxel by voxel
        for run in run_volumes:
            run[:, data.mask] = clean(run[:, data.mask], detrend=False, standardize="zscore_sample")
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
            residual_dynamics=sample_config["residual_dynamics"], residual_max_lag=clip_length - 1,
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
    if "interpretability" in out and len(spatial_per_category):
        train = ~data.is_test
        interpretability = attention_selectivity(spatial_per_category[:, data.mask], data.X[train][:, data.mask],
                                                 data.label_ids[train], data.runs[train], list(categories),
                                                 seed=sample_config["seed"])
        # the temporal attention by lag on real training-run clips, against the data's autocorrelation
        clips, clip_labels, _, _ = make_clips(data.X, data.label_ids, data.runs, data.train_runs, clip_length)
        pick = np.random.default_rng(sample_config["seed"]).choice(len(clips), min(64, len(clips)), replace=False)
        interpretability["temporal"] = temporal_attention_lags(
            diffusion, clips[pick], clip_labels[pick], data.X[train][:, data.mask], data.runs[train],
            data.hemodynamic_shift_volumes, seed=sample_config["seed"])
        with atomic_file(out["interpretability"]) as tmp:
            tmp.write_text(json.dumps(interpretability, indent=2))
    summary = {
        "sampler": sample_config["sampler"], "steps": len(sampler.timesteps), "guidance_scale": guidance,
        "variance": sample_config["variance"], "gaussian_prior": prior,
        "overlap": overlap, "residual_dynamics": dynamics, "standardize_runs": sample_config["standardize_runs"],
        "seed": sample_config["seed"], "device": str(device), "threads": torch.get_num_threads(),
        "inference_precision": precision,
        "n_clips": int(n_clips), "n_synthetic_volumes": int(len(synthetic) + category_clips.shape[0] * clip_length),
        "sampling_time_s": elapsed, "seconds_per_clip": elapsed / max(n_clips, 1),
        "synthetic_mean": float(synthetic[:, data.mask].mean()) if len(synthetic) else None,
        "synthetic_std": float(synthetic[:, data.mask].std()) if len(synthetic) else None,
        "real_heldout_std": float(data.X[data.is_test][:, data.mask].std()),
    }
    Path(out["summary"]).write_text(json.dumps(summary, indent=2))
    return summary
