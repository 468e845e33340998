"""train-diffusion: clips from the training runs, the training loop, EMA and resumable checkpoints."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .diffusion import GaussianDiffusion
from .distributed import (DistributedContext, context_from_environment, gpus_given_by_slurm, launch_torchrun,
                          resolve_processes, start_process_group, stop_process_group)
from .errors import ModalMergeInputError
from .model import SpatioTemporalDenoiser
from .preprocessing import PreparedData
from .schedulers import Scheduler

log = logging.getLogger("modalmerge")
CHECKPOINT_VERSION = 1
LOG_COLUMNS = ["step", "loss", "heldout_loss", "learning_rate", "wall_time_s"]


def usable_threads(requested: int) -> int:
    """``requested`` capped at the CPU cores this process may use (oversubscription was measured
    to slow training more than 2x on a 2-core machine)."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    return max(1, min(int(requested), available))


def choose_device(requested: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU; ``cpu``/``cuda``/``cuda:1`` as given."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModalMergeInputError(f"train.device is {requested!r} but CUDA is not available here; use 'auto' or 'cpu'.")
    return torch.device(requested)


def make_clips(X: np.ndarray, label_ids: np.ndarray, runs: np.ndarray, keep_runs: list[int], clip_length: int, stride: int = 1):
    """All windows of ``clip_length`` consecutive volumes inside one run of ``keep_runs``.

    Returns ``(clips (n, T, x, y, z), labels (n, T), clip_runs (n,), starts (n,))``.
    """
    clips, labels, clip_runs, starts = [], [], [], []
    for run in keep_runs:
        index = np.flatnonzero(runs == run)
        for start in range(0, len(index) - clip_length + 1, stride):
            window = index[start:start + clip_length]
            clips.append(X[window])
            labels.append(label_ids[window])
            clip_runs.append(run)
            starts.append(window[0])
    if not clips:
        raise ModalMergeInputError(f"No clip of {clip_length} volumes fits in runs {keep_runs}; lower model.clip_length.")
    return np.stack(clips).astype(np.float32), np.stack(labels), np.array(clip_runs), np.array(starts)


def build_diffusion(model_config: dict, diffusion_config: dict, grid_shape, n_classes: int, mask: np.ndarray,
                    gradient_checkpointing: bool = False) -> GaussianDiffusion:
    """The denoiser wrapped in its diffusion process, from the ``model`` and ``diffusion`` config blocks."""
    network = SpatioTemporalDenoiser(
        grid_shape, model_config["clip_length"], n_classes, channels=model_config["channels"],
        attention_levels=model_config.get("attention_levels"), res_blocks=model_config["res_blocks"],
        temporal_heads=model_config["temporal_heads"], temporal_head_dim=model_config["temporal_head_dim"],
        norm_groups=model_config["norm_groups"], dropout=model_config["dropout"],
        gradient_checkpointing=gradient_checkpointing)
    scheduler = Scheduler(**scheduler_kwargs(diffusion_config))
    return GaussianDiffusion(network, scheduler, torch.as_tensor(mask), diffusion_config["label_dropout"],
                             diffusion_config.get("min_snr_gamma"))


def scheduler_kwargs(diffusion_config: dict) -> dict:
    return {key: diffusion_config[key] for key in
            ("n_train_steps", "schedule", "beta_start", "beta_end", "prediction_type", "clip_sample")}


class ExponentialMovingAverage:
    """EMA of the weights with a warm-up: decay_k = min(decay, (1 + k) / (10 + k)).

    Written here (not torch.optim.swa_utils) for the warm-up: a fixed 0.999 with no warm-up was
    measured worse than the raw weights over short CPU runs.
    """

    def __init__(self, network: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(network).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        # one fused call over all parameters instead of one kernel each (on the H100 this did not
        # change the launch-bound step time of the slice data; bench/README.md section 7)
        torch._foreach_lerp_(list(self.shadow.parameters()), [p.detach() for p in network.parameters()], 1 - decay)
        for ema_b, b in zip(self.shadow.buffers(), network.buffers()):
            ema_b.copy_(b)


# keys that change how training is run, not what it computes: a checkpoint resumes across them
RUN_ONLY_TRAIN_KEYS = ("processes", "device", "log_every", "checkpoint_every")


def config_fingerprint(config: dict) -> str:
    config = copy.deepcopy(config)
    for key in RUN_ONLY_TRAIN_KEYS:
        config.get("train", {}).pop(key, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint_atomic(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors, numbers, strings, lists, dicts only)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise ModalMergeInputError(f"Checkpoint {path} not found: run the train_diffusion stage first.") from None
    except Exception as err:
        raise ModalMergeInputError(f"Cannot load checkpoint {path}: {err}. Delete it and train again.") from err


def heldout_denoising_error(diffusion: GaussianDiffusion, clips: torch.Tensor, labels: torch.Tensor,
                            n_bins: int = 10, per_bin: int = 8, seed: int = 1234, batch: int = 16):
    """Denoising error on held-out clips at fixed timesteps and noises: ``(bin_timesteps, errors)``.

    The trivial baseline (predicting zero noise) scores 1.0 per element for eps-prediction.
    """
    generator = torch.Generator().manual_seed(seed)
    n_steps = diffusion.scheduler.n_train_steps
    edges = np.linspace(0, n_steps, n_bins + 1).astype(int)
    timesteps, errors = [], []
    device = diffusion.mask.device
    was_training = diffusion.training
    diffusion.eval()
    with torch.no_grad():
        for lo, hi in zip(edges[:-1], edges[1:]):
            pick = torch.randint(0, len(clips), (per_bin,), generator=generator)
            t = torch.randint(int(lo), int(hi), (per_bin,), generator=generator)
            noise = torch.randn((per_bin, *clips.shape[1:]), generator=generator)
            losses = []
            for s in range(0, per_bin, batch):
                sl = slice(s, s + batch)
                losses.append(diffusion.loss_per_clip(clips[pick[sl]].to(device), labels[pick[sl]].to(device),
                                                      t[sl].to(device), noise[sl].to(device)).cpu())
            timesteps.append(int((lo + hi) // 2))
            errors.append(float(torch.cat(losses).mean()))
    diffusion.train(was_training)
    return timesteps, errors


class Trainer:
    """Owns data, optimiser, EMA and checkpoints; resumes from the last checkpoint if it matches.

    ``checkpoint_path`` is the rolling checkpoint written every ``checkpoint_every`` steps (it is
    not a workflow output, so a killed job keeps it); ``final_path`` gets the finished model.

    Data-parallel (``context.world_size`` > 1, under torchrun): every rank draws the same global
    batch, timesteps and noise from the shared seed and trains on its own contiguous share; DDP
    averages the gradients, so the step is the one-process step with the same global batch. Rank
    0 alone evaluates and writes.
    """

    def __init__(self, diffusion: GaussianDiffusion, clips: np.ndarray, clip_labels: np.ndarray,
                 train_config: dict, checkpoint_path: str | Path, metadata: dict,
                 heldout: tuple[np.ndarray, np.ndarray] | None = None, device: torch.device | None = None,
                 progress: bool = True, context: DistributedContext | None = None):
        self.device = device or torch.device("cpu")
        self.context = context or DistributedContext()
        self.shard = self.context.shard(train_config["batch_size"])
        self.diffusion = diffusion.to(self.device)
        self.model = self.diffusion
        if self.context.enabled:
            from torch.nn.parallel import DistributedDataParallel
            self.model = DistributedDataParallel(
                self.diffusion, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.clips = torch.as_tensor(clips)
        self.clip_labels = torch.as_tensor(clip_labels, dtype=torch.long)
        self.config = train_config
        self.checkpoint_path = Path(checkpoint_path)
        self.metadata = metadata
        self.heldout = None if heldout is None else (torch.as_tensor(heldout[0]), torch.as_tensor(heldout[1], dtype=torch.long))
        self.progress = progress and self.context.is_main
        self.optimizer = torch.optim.AdamW(diffusion.network.parameters(), lr=train_config["learning_rate"],
                                           weight_decay=train_config["weight_decay"])
        self.ema = ExponentialMovingAverage(diffusion.network, train_config["ema_decay"])
        self.generator = torch.Generator(device=self.device).manual_seed(train_config["seed"])
        self.sample_generator = torch.Generator().manual_seed(train_config["seed"] + 1)
        self.step = 0
        self.elapsed = 0.0
        self.log_rows: list[list[float]] = []
        self.fingerprint = config_fingerprint(metadata["config"])
        self.use_amp = self.device.type == "cuda" and train_config["mixed_precision"]

    def learning_rate(self, step: int) -> float:
        base, warmup, total = self.config["learning_rate"], self.config["warmup_steps"], self.config["steps"]
        if step < warmup:
            return base * (step + 1) / warmup
        if self.config["lr_schedule"] == "cosine":
            progress = (step - warmup) / max(total - warmup, 1)
            return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        return base

    def state_dict(self) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "step": self.step, "elapsed_s": self.elapsed,
            "model": self.diffusion.state_dict(), "ema": self.ema.shadow.state_dict(), "ema_updates": self.ema.updates,
            "opt": self.optimizer.state_dict(), "generator": self.generator.get_state(),
            "sample_generator": self.sample_generator.get_state(), "log": self.log_rows,
            "fingerprint": self.fingerprint, "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict) -> None:
        self.diffusion.load_state_dict(state["model"])
        self.ema.shadow.load_state_dict(state["ema"])
        self.ema.updates = state["ema_updates"]
        self.optimizer.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"].to(self.generator.get_state().device))
        self.sample_generator.set_state(state["sample_generator"])
        self.step, self.elapsed, self.log_rows = state["step"], state["elapsed_s"], [list(r) for r in state["log"]]

    def try_resume(self) -> bool:
        """Resume from ``checkpoint_path`` when it exists and was made with the same configuration."""
        if not self.checkpoint_path.exists():
            return False
        state = load_checkpoint(self.checkpoint_path, self.device)
        if state.get("fingerprint") != self.fingerprint or state.get("version") != CHECKPOINT_VERSION:
            log.warning("ignoring checkpoint %s: made with another configuration", self.checkpoint_path)
            return False
        self.load_state_dict(state)
        log.info("resumed from %s at step %d", self.checkpoint_path, self.step)
        return True

    def ema_diffusion(self) -> GaussianDiffusion:
        """The diffusion process with the EMA weights (what sampling uses)."""
        d = self.diffusion
        return GaussianDiffusion(self.ema.shadow, d.scheduler, d.mask, d.label_dropout, d.min_snr_gamma).to(self.device)

    def heldout_loss(self) -> float:
        """Mean denoising error of the EMA weights on held-out clips (fixed timesteps and noise)."""
        if self.heldout is None:
            return float("nan")
        _, errors = heldout_denoising_error(self.ema_diffusion(), *self.heldout, n_bins=4, per_bin=4)
        return float(np.mean(errors))

    def train(self, log_path: str | Path | None = None) -> dict:
        """Run until ``steps``; write ``log_path`` (TSV) as training goes; return a summary."""
        cfg = self.config
        self.try_resume()
        self.diffusion.train()
        write_log = _TrainingLog(log_path if self.context.is_main else None, self.log_rows)
        amp = torch.autocast("cuda", dtype=torch.bfloat16) if self.use_amp else nullcontext()
        bar = tqdm(total=cfg["steps"], initial=self.step, disable=not self.progress, desc="train", dynamic_ncols=True)
        running, count = 0.0, 0
        while self.step < cfg["steps"]:
            started = time.perf_counter()
            lr = self.learning_rate(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            pick = torch.randint(0, len(self.clips), (cfg["batch_size"],), generator=self.sample_generator)
            draws = self.diffusion.training_draws(len(pick), self.clips.shape[1:], self.generator, self.device)
            pick, draws = pick[self.shard], draws.part(self.shard)
            x0 = self.clips[pick].to(self.device, non_blocking=True)
            labels = self.clip_labels[pick].to(self.device)
            with amp:
                loss = self.model(x0, labels, draws=draws)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.diffusion.network.parameters(), cfg["grad_clip"])
            self.optimizer.step()
            self.ema.update(self.diffusion.network)
            self.step += 1
            running = running + loss.detach().float()  # stays on the device: no sync per step
            count += 1
            log_now = self.step % cfg["log_every"] == 0 or self.step == cfg["steps"]
            if log_now and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so wall_time_s counts the queued GPU work
            self.elapsed += time.perf_counter() - started
            bar.update(1)
            if log_now:
                evaluate = self.context.is_main and (self.step % cfg["eval_every"] == 0 or self.step == cfg["steps"])
                heldout = self.heldout_loss() if evaluate else float("nan")
                mean_loss = self.context.mean(running / count)  # over all ranks: the global batch's loss
                row = [self.step, mean_loss, heldout, lr, round(self.elapsed, 3)]
                self.log_rows.append(row)
                write_log.append(row)
                bar.set_postfix(loss=f"{mean_loss:.3f}")
                running, count = 0.0, 0
            if self.context.is_main and (self.step % cfg["checkpoint_every"] == 0 or self.step == cfg["steps"]):
                save_checkpoint_atomic(self.state_dict(), self.checkpoint_path)
        bar.close()
        return {"steps": self.step, "train_time_s": self.elapsed,
                "final_loss": self.log_rows[-1][1] if self.log_rows else float("nan")}


class _TrainingLog:
    """training_log.tsv, rewritten from the checkpoint's rows on resume, then appended to."""

    def __init__(self, path: str | Path | None, rows: list[list[float]]):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w") as handle:
                handle.write("\t".join(LOG_COLUMNS) + "\n")
                for row in rows:
                    handle.write(_format_row(row))

    def append(self, row: list[float]) -> None:
        if self.path:
            with open(self.path, "a") as handle:
                handle.write(_format_row(row))


def _format_row(row) -> str:
    step, loss, heldout, lr, wall = row
    return f"{int(step)}\t{loss:.6f}\t{heldout:.6f}\t{lr:.3e}\t{wall:.3f}\n"


def train_subject(volumes_path: str | Path, split_path: str | Path, config: dict, out: dict,
                  threads: int = 1, progress: bool = True) -> dict:
    """train-diffusion for one subject: clips of the training runs only; write ``out`` paths.

    ``out`` keys: ``model`` (final checkpoint), ``log`` (training_log.tsv), ``summary`` (JSON),
    ``checkpoint`` (rolling checkpoint, not a workflow output). With ``train.processes`` above 1
    this starts torchrun and waits for it (see :mod:`modalmerge.distributed`); under torchrun each
    rank runs this function and rank 0 writes.
    """
    train_cfg = config["train"]
    context = context_from_environment()
    if not context.enabled:
        processes = resolve_processes(train_cfg.get("processes", 1), choose_device(train_cfg["device"]))
        if processes > 1:
            # bad input fails here, with the input error, before any process starts
            DistributedContext(world_size=processes).shard(train_cfg["batch_size"])
            _read_split(split_path)
            PreparedData.load(volumes_path)
            return launch_torchrun(processes, volumes_path, split_path, config, out, usable_threads(threads))
    device = context.device(choose_device(train_cfg["device"]))
    start_process_group(context, device)
    try:
        return _train(volumes_path, split_path, config, out, threads, progress, context, device)
    finally:
        stop_process_group()


def _read_split(split_path):
    from .preprocessing import RunSplit

    split = RunSplit.read(split_path)
    if set(split.test_runs) & set(split.train_runs):
        raise ModalMergeInputError(f"{split_path}: runs {sorted(set(split.test_runs) & set(split.train_runs))} are both train and test.")
    return split


def _train(volumes_path, split_path, config: dict, out: dict, threads: int, progress: bool,
           context: DistributedContext, device: torch.device) -> dict:
    torch.set_num_threads(usable_threads(threads))
    train_cfg, model_cfg, diffusion_cfg = config["train"], config["model"], config["diffusion"]
    torch.manual_seed(train_cfg["seed"])
    data = PreparedData.load(volumes_path)
    split = _read_split(split_path)
    clips, clip_labels, _, _ = make_clips(data.X, data.label_ids, data.runs, split.train_runs, model_cfg["clip_length"])
    heldout = make_clips(data.X, data.label_ids, data.runs, split.test_runs, model_cfg["clip_length"], stride=model_cfg["clip_length"])
    diffusion = build_diffusion(model_cfg, diffusion_cfg, data.X.shape[1:], len(data.class_names), data.mask,
                                gradient_checkpointing=train_cfg["gradient_checkpointing"])
    metadata = {
        "config": {"model": model_cfg, "diffusion": diffusion_cfg, "train": train_cfg},
        "grid_shape": list(data.X.shape[1:]), "class_names": data.class_names.tolist(),
        "affine": data.affine.tolist(), "source_affine": data.source_affine.tolist(),
        "source_shape": data.source_shape.tolist(), "bbox_start": data.bbox_start.tolist(),
        "train_runs": split.train_runs, "test_runs": split.test_runs, "seed": train_cfg["seed"],
        "normalization": "per-run detrended z-scores (prep stage); mask in 'model' buffers",
        "processes": context.world_size,
    }
    trainer = Trainer(diffusion, clips, clip_labels, train_cfg, out["checkpoint"], metadata,
                      heldout=(heldout[0], heldout[1]), device=device, progress=progress, context=context)
    summary = trainer.train(out["log"])
    if not context.is_main:
        context.barrier()  # wait for rank 0 to write the outputs
        return summary
    heldout_tensors = (torch.as_tensor(heldout[0]), torch.as_tensor(heldout[1], dtype=torch.long))
    timesteps, errors = heldout_denoising_error(trainer.ema_diffusion(), *heldout_tensors)
    _, raw_errors = heldout_denoising_error(diffusion, *heldout_tensors)
    final = trainer.state_dict()
    final.pop("opt")  # the optimiser state (half the size) lives on in the rolling checkpoint only
    save_checkpoint_atomic(final, Path(out["model"]))
    n_params = sum(p.numel() for p in diffusion.network.parameters())
    summary.update({
        "device": str(device), "threads": torch.get_num_threads(), "processes": context.world_size,
        "parameters": n_params,
        "n_training_clips": int(len(clips)), "train_runs": split.train_runs, "test_runs": split.test_runs,
        "clips_per_s": summary["steps"] * train_cfg["batch_size"] / max(summary["train_time_s"], 1e-9),
        "trivial_baseline_loss": 1.0,
        "heldout_denoising_error_by_timestep": {"timestep": timesteps, "error_ema": errors, "error_raw": raw_errors},
        "heldout_denoising_error_ema": float(np.mean(errors)), "heldout_denoising_error_raw": float(np.mean(raw_errors)),
        "seed": train_cfg["seed"],
        # provenance on a cluster: which SLURM job trained, with how many GPUs (null elsewhere)
        "slurm": ({"job_id": os.environ["SLURM_JOB_ID"], "gpus_given": gpus_given_by_slurm()}
                  if "SLURM_JOB_ID" in os.environ else None),
    })
    Path(out["summary"]).write_text(json.dumps(summary, indent=2))
    context.barrier()
    return summary
