"""Stage runner of train_diffusion: clips of the training runs only, one process or several.

:func:`train_subject` is what the rule calls. With ``train.processes`` above 1 it starts torchrun
on :mod:`modalmerge.stages.train_cli`, whose processes each run :func:`train_process`; otherwise
it runs :func:`train_process` itself. Rank 0 writes every output. The stage holds a lock on the
checkpoint, and the trainer stops (checkpoint saved) when the workflow that started it is gone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..analysis.generator_baselines import (component_temporal_correlation, cross_validated_shrinkage,
                                           within_category_covariance)
from ..data.clips import make_clips
from ..data.dataset import PreparedData, RunSplit
from ..errors import ModalMergeInputError
from ..diffusion.checkpoints import build_diffusion, save_checkpoint_atomic
from ..runtime import choose_device, usable_threads
from ..training.distributed import (DistributedContext, context_from_environment, gpus_given_by_slurm,
                                    launch_torchrun, resolve_processes, start_process_group, stop_process_group)
from ..training.guard import AncestorWatch, CheckpointLock
from ..training.trainer import Trainer, heldout_denoising_error

WORKER_MODULE = "modalmerge.stages.train_cli"


def train_subject(volumes_path: str | Path, split_path: str | Path, config: dict, out: dict,
                  threads: int = 1, progress: bool = True) -> dict:
    """train-diffusion for one subject; ``out`` keys: ``model`` (final checkpoint), ``log``
    (training_log.tsv), ``summary`` (JSON), ``checkpoint`` (rolling checkpoint, not a workflow output)."""
    train_cfg = config["train"]
    processes = resolve_processes(train_cfg.get("processes", 1), choose_device(train_cfg["device"]))
    with CheckpointLock(out["checkpoint"]):
        if processes == 1:
            return train_process(volumes_path, split_path, config, out, threads, progress)
        # bad input fails here, with the input error, before any process starts
        DistributedContext(world_size=processes).shard(train_cfg["batch_size"])
        RunSplit.read(split_path)
        PreparedData.load(volumes_path)
        job = {"volumes": str(volumes_path), "split": str(split_path), "config": config,
               "out": {key: str(path) for key, path in out.items()}}
        launch_torchrun(processes, WORKER_MODULE, job, usable_threads(threads))
        return json.loads(Path(out["summary"]).read_text())


def validation_split(validation_runs: list, split: RunSplit) -> list[int]:
    """The training runs kept out of the model's training to choose its checkpoint (never a test run)."""
    runs = [int(run) for run in validation_runs]
    outside = [run for run in runs if run not in split.train_runs]
    if outside:
        raise ModalMergeInputError(
            f"config key 'train.validation_runs': runs {outside} are not training runs of this subject "
            f"(training runs: {split.train_runs}); pick validation runs among them.")
    if len(runs) >= len(split.train_runs):
        raise ModalMergeInputError(
            f"config key 'train.validation_runs': {runs} leaves no run to train on (training runs: {split.train_runs}).")
    return runs


def fit_gaussian_baseline(baseline, data: PreparedData, runs: list[int], shrinkage: str = "ledoit_wolf") -> float | None:
    """Fit ``model.gaussian_baseline``'s Gaussian on the volumes of ``runs``: category means, the covariance
    around them (Ledoit-Wolf, or with ``shrinkage`` "run_cv" shrunk as leave-one-run-out likelihood says) and,
    for a temporal baseline, each eigencomponent's correlation within a clip. Returns the cross-validated
    shrinkage (None for Ledoit-Wolf)."""
    own = np.isin(data.runs, runs)
    volumes, labels = data.X[own], data.label_ids[own]
    X = volumes[:, data.mask]
    chosen = None
    if shrinkage == "run_cv":
        chosen, covariance = cross_validated_shrinkage(X, labels, data.runs[own])
    elif shrinkage == "ledoit_wolf":
        covariance = within_category_covariance(X, labels)
    else:
        raise ValueError(f"model.gaussian_baseline_shrinkage is {shrinkage!r}: use 'ledoit_wolf' or 'run_cv'.")
    temporal = basis = None
    if baseline.temporal:
        basis = np.linalg.eigh(covariance)[1]
        temporal = component_temporal_correlation(X, labels, data.runs[own], basis, baseline.clip_length)
    baseline.fit(volumes, labels, covariance, temporal, basis)
    return chosen


def train_process(volumes_path, split_path, config: dict, out: dict, threads: int = 1, progress: bool = True) -> dict:
    """One training process (the only one, or one rank under torchrun); rank 0 writes ``out``."""
    context = context_from_environment()
    device = context.device(choose_device(config["train"]["device"]))
    start_process_group(context, device)
    try:
        return _train(volumes_path, split_path, config, out, threads, progress, context, device)
    finally:
        stop_process_group()


def _train(volumes_path, split_path, config: dict, out: dict, threads: int, progress: bool,
           context: DistributedContext, device: torch.device) -> dict:
    torch.set_num_threads(usable_threads(threads))
    train_cfg, model_cfg, diffusion_cfg = config["train"], config["model"], config["diffusion"]
    torch.manual_seed(train_cfg["seed"])
    data = PreparedData.load(volumes_path)
    split = RunSplit.read(split_path)
    validation_runs = validation_split(train_cfg.get("validation_runs") or [], split)
    model_runs = [run for run in split.train_runs if run not in validation_runs]
    clips, clip_labels, _, _ = make_clips(data.X, data.label_ids, data.runs, model_runs, model_cfg["clip_length"])
    validation = (make_clips(data.X, data.label_ids, data.runs, validation_runs, model_cfg["clip_length"],
                             stride=model_cfg["clip_length"])[:2] if validation_runs else None)
    heldout = make_clips(data.X, data.label_ids, data.runs, split.test_runs, model_cfg["clip_length"], stride=model_cfg["clip_length"])
    diffusion = build_diffusion(model_cfg, diffusion_cfg, data.X.shape[1:], len(data.class_names), data.mask,
                                gradient_checkpointing=train_cfg["gradient_checkpointing"])
    shrinkage = None
    if model_cfg.get("gaussian_baseline", False):  # the Gaussian of the model's own runs (no validation run)
        shrinkage = fit_gaussian_baseline(diffusion.network, data, model_runs,
                                          model_cfg.get("gaussian_baseline_shrinkage", "ledoit_wolf"))
    metadata = {
        "config": {"model": model_cfg, "diffusion": diffusion_cfg, "train": train_cfg},
        "grid_shape": list(data.X.shape[1:]), "class_names": data.class_names.tolist(),
        "affine": data.affine.tolist(), "source_affine": data.source_affine.tolist(),
        "source_shape": data.source_shape.tolist(), "bbox_start": data.bbox_start.tolist(),
        "train_runs": model_runs, "validation_runs": validation_runs, "test_runs": split.test_runs,
        "seed": train_cfg["seed"],
        "normalization": "per-run detrended z-scores (prep stage); mask in 'model' buffers",
        "processes": context.world_size,
    }
    trainer = Trainer(diffusion, clips, clip_labels, train_cfg, out["checkpoint"], metadata,
                      heldout=(heldout[0], heldout[1]), device=device, progress=progress, context=context,
                      watch=AncestorWatch(), validation=validation)
    summary = trainer.train(out["log"])
    if not context.is_main:
        context.barrier()  # wait for rank 0 to write the outputs
        return summary
    heldout_tensors = (torch.as_tensor(heldout[0]), torch.as_tensor(heldout[1], dtype=torch.long))
    timesteps, errors = heldout_denoising_error(trainer.chosen_ema_diffusion(), *heldout_tensors)
    _, raw_errors = heldout_denoising_error(diffusion, *heldout_tensors)
    final = trainer.state_dict()
    final.pop("opt")  # the optimiser state (half the size) lives on in the rolling checkpoint only
    best = final.pop("best")
    final["ema"] = trainer.chosen_ema_state()  # the model: the validation's choice (else the last step)
    save_checkpoint_atomic(final, Path(out["model"]))
    n_params = sum(p.numel() for p in diffusion.network.parameters())
    summary.update({
        "device": str(device), "threads": torch.get_num_threads(), "processes": context.world_size,
        "training_precision": "bfloat16" if trainer.use_amp else "float32",
        "cuda_graph": trainer.graphed,  # whether the step was captured in a CUDA graph (train.cuda_graph)
        "parameters": n_params,
        "n_training_clips": int(len(clips)), "train_runs": model_runs, "test_runs": split.test_runs,
        "validation_runs": validation_runs,
        "chosen_step": best["step"] if best else summary["steps"],
        "validation_denoising_error": best["error"] if best else None,
        "clips_per_s": summary["steps"] * train_cfg["batch_size"] / max(summary["train_time_s"], 1e-9),
        "trivial_baseline_loss": 1.0,
        "heldout_denoising_error_by_timestep": {"timestep": timesteps, "error_ema": errors, "error_raw": raw_errors},
        "heldout_denoising_error_ema": float(np.mean(errors)), "heldout_denoising_error_raw": float(np.mean(raw_errors)),
        "seed": train_cfg["seed"],
        "gaussian_baseline_shrinkage": shrinkage,  # the cross-validated shrinkage (run_cv), else null
        # provenance on a cluster: which SLURM job trained, with how many GPUs (null elsewhere)
        "slurm": ({"job_id": os.environ["SLURM_JOB_ID"], "gpus_given": gpus_given_by_slurm()}
                  if "SLURM_JOB_ID" in os.environ else None),
    })
    Path(out["summary"]).write_text(json.dumps(summary, indent=2))
    context.barrier()
    return summary
