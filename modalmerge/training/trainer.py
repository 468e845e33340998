"""The training loop: data, AdamW, EMA (with warm-up) and resumable checkpoints of one diffusion model.

The stage runner (:mod:`modalmerge.stages.train`) reads the prepared data, cuts clips and decides
whether to run one process or several under torchrun; this module knows nothing of files but the
checkpoint and the training log.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..diffusion.checkpoints import CHECKPOINT_VERSION, load_checkpoint, save_checkpoint_atomic
from ..diffusion.gaussian import GaussianDiffusion
from ..runtime import native_bfloat16
from .distributed import DistributedContext
from .ema import ExponentialMovingAverage
from .graphed import PinnedUpload, StaticStep, load_optimizer_state, portable_optimizer_state, use_cuda_graph
from .guard import AncestorWatch
from .log import TrainingLog

log = logging.getLogger("modalmerge")


# keys that change how training is run, not what it computes: a checkpoint resumes across them
RUN_ONLY_TRAIN_KEYS = ("processes", "device", "log_every", "checkpoint_every", "checkpoint_min_interval_s",
                       "cuda_graph")


def config_fingerprint(config: dict) -> str:
    config = copy.deepcopy(config)
    for key in RUN_ONLY_TRAIN_KEYS:
        config.get("train", {}).pop(key, None)
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


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

    ``validation`` (clips and labels of training runs the model does not train on) chooses the
    model: every ``eval_every`` steps the EMA weights' validation denoising error (fixed timesteps
    and noise) is measured and the best weights are kept; :meth:`chosen_ema_state` returns them.
    ``heldout`` (the test runs) is only logged, never used to choose.
    """

    def __init__(self, diffusion: GaussianDiffusion, clips: np.ndarray, clip_labels: np.ndarray,
                 train_config: dict, checkpoint_path: str | Path, metadata: dict,
                 heldout: tuple[np.ndarray, np.ndarray] | None = None, device: torch.device | None = None,
                 validation: tuple[np.ndarray, np.ndarray] | None = None,
                 progress: bool = True, context: DistributedContext | None = None, watch: AncestorWatch | None = None):
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
        self.validation = None if validation is None else (torch.as_tensor(validation[0]),
                                                           torch.as_tensor(validation[1], dtype=torch.long))
        self.best: dict | None = None  # {"step", "error", "ema"} of the lowest validation error so far
        self.progress = progress and self.context.is_main
        self.graphed = use_cuda_graph(train_config.get("cuda_graph", "auto"), self.device, self.context.enabled,
                                      bool(getattr(diffusion.network, "gradient_checkpointing", False)))
        # a captured step reads the learning rate from a device tensor and counts steps on the device
        lr = (torch.tensor(train_config["learning_rate"], dtype=torch.float32, device=self.device)
              if self.graphed else train_config["learning_rate"])
        self.optimizer = torch.optim.AdamW(diffusion.network.parameters(), lr=lr,
                                           weight_decay=train_config["weight_decay"], capturable=self.graphed)
        # on a GPU the clips stay on the device and only the picked indices travel (pinned, no sync)
        self.on_device = self.device.type == "cuda"
        self.upload = PinnedUpload(self.device) if self.on_device else None
        if self.on_device:
            self.clips = self.clips.to(self.device)
            self.clip_labels = self.clip_labels.to(self.device)
        self.ema = ExponentialMovingAverage(diffusion.network, train_config["ema_decay"])
        self.generator = torch.Generator(device=self.device).manual_seed(train_config["seed"])
        self.sample_generator = torch.Generator().manual_seed(train_config["seed"] + 1)
        self.step = 0
        self.elapsed = 0.0
        self.log_rows: list[list[float]] = []
        self.fingerprint = config_fingerprint(metadata["config"])
        # bf16 autocast: on CUDA by default; on a CPU only when asked and computed natively there
        self.use_amp = ((self.device.type == "cuda" and train_config["mixed_precision"])
                        or (self.device.type == "cpu" and train_config.get("cpu_mixed_precision", False)
                            and native_bfloat16(self.device)))
        self.watch = watch
        self.last_watch = time.monotonic()

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
            "opt": portable_optimizer_state(self.optimizer), "generator": self.generator.get_state(),
            "sample_generator": self.sample_generator.get_state(), "log": self.log_rows,
            "fingerprint": self.fingerprint, "metadata": self.metadata, "best": self.best,
        }

    def load_state_dict(self, state: dict) -> None:
        self.diffusion.load_state_dict(state["model"])
        self.ema.shadow.load_state_dict(state["ema"])
        self.ema.updates = state["ema_updates"]
        load_optimizer_state(self.optimizer, state["opt"], capturable=self.graphed)
        self.generator.set_state(state["generator"].to(self.generator.get_state().device))
        self.sample_generator.set_state(state["sample_generator"])
        self.step, self.elapsed, self.log_rows = state["step"], state["elapsed_s"], [list(r) for r in state["log"]]
        self.best = state.get("best")

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

    def validation_loss(self) -> float:
        """Validation denoising error of the EMA weights (fixed timesteps and noise, so steps compare
        paired); keeps the weights when they are the best so far."""
        if self.validation is None:
            return float("nan")
        _, errors = heldout_denoising_error(self.ema_diffusion(), *self.validation)
        error = float(np.mean(errors))
        if self.best is None or error < self.best["error"]:
            self.best = {"step": self.step, "error": error,
                         "ema": {k: v.detach().cpu().clone() for k, v in self.ema.shadow.state_dict().items()}}
        return error

    def chosen_ema_state(self) -> dict:
        """The EMA weights the model is made of: the best on validation, else the last."""
        return self.best["ema"] if self.best is not None else self.ema.shadow.state_dict()

    def chosen_ema_diffusion(self) -> GaussianDiffusion:
        diffusion = self.ema_diffusion()
        diffusion.network = copy.deepcopy(diffusion.network)
        diffusion.network.load_state_dict(self.chosen_ema_state())
        return diffusion

    def train(self, log_path: str | Path | None = None) -> dict:
        """Run until ``steps``; write ``log_path`` (TSV) as training goes; return a summary."""
        cfg = self.config
        self.try_resume()
        self.diffusion.train()
        write_log = TrainingLog(log_path if self.context.is_main else None, self.log_rows)
        # one step body, captured in a CUDA graph where train.cuda_graph resolves to it, else run as is
        step = StaticStep(self.diffusion, self.optimizer, self.ema, cfg["grad_clip"],
                          torch.bfloat16 if self.use_amp else None, capture=self.graphed, model=self.model)
        bar = tqdm(total=cfg["steps"], initial=self.step, disable=not self.progress, desc="train", dynamic_ncols=True)
        running, count = 0.0, 0
        last_save = time.monotonic()
        while self.step < cfg["steps"]:
            started = time.perf_counter()
            lr = self.learning_rate(self.step)
            pick = torch.randint(0, len(self.clips), (cfg["batch_size"],), generator=self.sample_generator)
            draws = self.diffusion.training_draws(len(pick), self.clips.shape[1:], self.generator, self.device)
            pick, draws = pick[self.shard], draws.part(self.shard)
            if self.on_device:
                pick = self.upload(pick)
            x0 = self.clips[pick].to(self.device, non_blocking=True)
            labels = self.clip_labels[pick].to(self.device)
            loss = step(x0, labels, draws, lr)
            self.step += 1
            running = running + loss  # stays on the device: no sync per step
            count += 1
            log_now = self.step % cfg["log_every"] == 0 or self.step == cfg["steps"]
            if log_now and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # so wall_time_s counts the queued GPU work
            self.elapsed += time.perf_counter() - started
            bar.update(1)
            if log_now:
                evaluate = self.context.is_main and (self.step % cfg["eval_every"] == 0 or self.step == cfg["steps"])
                heldout = self.heldout_loss() if evaluate else float("nan")
                validation = self.validation_loss() if evaluate else float("nan")
                mean_loss = self.context.mean(running / count)  # over all ranks: the global batch's loss
                row = [self.step, mean_loss, heldout, lr, round(self.elapsed, 3), validation]
                self.log_rows.append(row)
                write_log.append(row)
                bar.set_postfix(loss=f"{mean_loss:.3f}")
                running, count = 0.0, 0
            if self.context.is_main and (self.step == cfg["steps"] or (
                    self.step % cfg["checkpoint_every"] == 0
                    and time.monotonic() - last_save >= cfg.get("checkpoint_min_interval_s", 0))):
                save_checkpoint_atomic(self.state_dict(), self.checkpoint_path)
                last_save = time.monotonic()
            self.stop_if_orphaned()
        bar.close()
        return {"steps": self.step, "train_time_s": self.elapsed,
                "final_loss": self.log_rows[-1][1] if self.log_rows else float("nan")}


    def stop_if_orphaned(self, every_s: float = 2.0) -> None:
        """Save the checkpoint and stop when a process that started this one is gone (checked every
        ``every_s`` seconds): a killed workflow must not leave a trainer running on its own."""
        if self.watch is None or time.monotonic() - self.last_watch < every_s:
            return
        self.last_watch = time.monotonic()
        gone = self.watch.gone()
        if gone:
            if self.context.is_main:
                save_checkpoint_atomic(self.state_dict(), self.checkpoint_path)
            log.warning("the process that started training (%s) is gone: stopped at step %d; the checkpoint %s "
                        "resumes it", gone, self.step, self.checkpoint_path)
            raise TrainingInterrupted(f"training stopped at step {self.step}: its parent process {gone} is gone")


class TrainingInterrupted(RuntimeError):
    """Training stopped early because the workflow that started it is gone."""
