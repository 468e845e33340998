"""GaussianDiffusion: wraps the denoiser with a schedule; the training loss, and every operation
analysis needs from a trained model: ``sample``, ``reconstruct`` and ``denoising_error``.

The network (``model/``), the schedule and samplers (``schedulers.py``) and the training loop
(``training/``) are three separate things; this module is the glue between the first two.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from .schedulers import DDIMScheduler, PredictionType, Scheduler


class TrainingDraws(NamedTuple):
    """Timesteps ``t`` (B,), noise (B, T, x, y, z), label-drop flags (B,) and the number of clean
    context frames (B,) (or None when the model does not learn continuation) of one training step."""

    t: torch.Tensor
    noise: torch.Tensor
    drop: torch.Tensor
    context: torch.Tensor | None = None

    def part(self, clips: slice) -> "TrainingDraws":
        """The draws of a contiguous range of clips (one data-parallel rank's share)."""
        return TrainingDraws(self.t[clips], self.noise[clips], self.drop[clips],
                             None if self.context is None else self.context[clips])


class GaussianDiffusion(nn.Module):
    """Conditional DDPM on clips ``(B, T, x, y, z)`` with classifier-free guidance.

    Parameters
    ----------
    network : the denoiser; called as ``network(x_t, t, labels)``.
    scheduler : the training schedule (also the source of ``add_noise`` and targets).
    mask : ``(x, y, z)`` brain mask; the loss is averaged over voxels inside it only.
    label_dropout : probability of replacing a clip's labels by the null label during training
        (teaches the unconditional model used by guidance).
    min_snr_gamma : if set, weight the loss by min(SNR, gamma) / SNR (eps) or
        min(SNR, gamma) / (SNR + 1) (v), the "min-SNR" weighting of Hang et al. (2023).
    context_prob : probability that a training clip's first k frames (k uniform in 1..T-1) are
        given clean, at timestep 0, and left out of the loss: the model then also learns to
        continue a clip from frames already generated (per-frame noise levels, as in video
        diffusion models that extend sequences); 0 = every frame is noised alike.
    """

    def __init__(self, network: nn.Module, scheduler: Scheduler, mask: torch.Tensor,
                 label_dropout: float = 0.1, min_snr_gamma: float | None = None, context_prob: float = 0.0):
        super().__init__()
        if not 0 <= label_dropout < 1:
            raise ValueError(f"label_dropout must be in [0, 1); got {label_dropout}.")
        self.network = network
        self.scheduler = scheduler
        self.register_buffer("mask", mask.float())
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.float())
        self.label_dropout = label_dropout
        self.min_snr_gamma = min_snr_gamma
        if not 0 <= context_prob <= 1:
            raise ValueError(f"context_prob must be in [0, 1]; got {context_prob}.")
        self.context_prob = context_prob

    @property
    def null_label(self) -> int:
        return self.network.null_label

    def training_draws(self, n_clips: int, clip_shape, generator: torch.Generator | None = None,
                       device: torch.device | str = "cpu") -> "TrainingDraws":
        """The random part of one training step for ``n_clips`` clips: timesteps, noise, label drops.

        Drawn apart from the loss so that data-parallel ranks can draw the global batch's values
        from one seeded generator and each take its own slice (same numbers as one process).
        """
        t = torch.randint(0, self.scheduler.n_train_steps, (n_clips,), generator=generator, device=device)
        noise = torch.randn((n_clips, *clip_shape), generator=generator, device=device)
        drop = (torch.rand(n_clips, generator=generator, device=device) < self.label_dropout
                if self.label_dropout > 0 else torch.zeros(n_clips, dtype=torch.bool, device=device))
        context = None
        if self.context_prob > 0 and clip_shape[0] > 1:  # drawn only then: without it, the old draws exactly
            given = torch.rand(n_clips, generator=generator, device=device) < self.context_prob
            frames = torch.randint(1, clip_shape[0], (n_clips,), generator=generator, device=device)
            context = torch.where(given, frames, torch.zeros_like(frames))
        return TrainingDraws(t, noise, drop, context)

    def drop_labels(self, labels: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Replace the labels of the clips where ``drop`` is true by the null label."""
        return torch.where(drop[:, None], torch.full_like(labels, self.null_label), labels)

    def loss_per_clip(self, x0: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                      context: torch.Tensor | None = None) -> torch.Tensor:
        """Masked MSE between the network's output and its target, one value per clip: ``(B,)``.

        ``context`` (B,): how many leading frames of each clip are given clean (timestep 0) and
        left out of the loss."""
        x_t = self.scheduler.add_noise(x0, noise, t)
        if context is None:
            prediction = self.network(x_t, t, labels)
            frames = torch.ones(x0.shape[:2], device=x0.device)
        else:
            known = torch.arange(x0.shape[1], device=x0.device)[None] < context[:, None]  # (B, T)
            x_t = torch.where(known[(...,) + (None,) * (x0.ndim - 2)], x0, x_t)
            prediction = self.network(x_t, torch.where(known, torch.zeros_like(known, dtype=t.dtype), t[:, None]), labels)
            frames = (~known).float()
        target = self.scheduler.target(x0, noise, t)
        squared = (prediction.float() - target) ** 2 * self.mask * frames[(...,) + (None,) * (x0.ndim - 2)]
        per_clip = squared.flatten(1).sum(1) / (self.mask.sum() * frames.sum(1))
        if self.min_snr_gamma is not None:
            snr = self.scheduler.snr(t)
            clipped = snr.clamp(max=self.min_snr_gamma)
            weight = clipped / snr if self.scheduler.prediction_type is PredictionType.EPSILON else clipped / (snr + 1)
            per_clip = per_clip * weight
        return per_clip

    def forward(self, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None,
                draws: "TrainingDraws | None" = None) -> torch.Tensor:
        """Training loss of a batch of clean clips ``x0`` (B, T, x, y, z) with labels (B, T).

        ``draws`` (timesteps, noise, label drops) are drawn from ``generator`` when not given.
        """
        if draws is None:
            draws = self.training_draws(x0.shape[0], x0.shape[1:], generator, x0.device)
        labels = self.drop_labels(labels, draws.drop)
        return self.loss_per_clip(x0, labels, draws.t, draws.noise, draws.context).mean()

    def guided_output(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance_scale: float = 1.0) -> torch.Tensor:
        """Classifier-free guidance: uncond + s * (cond - uncond).

        ``guidance_scale`` 1 is the neutral value (the plain conditional prediction, one pass);
        0 is the unconditional model; > 1 strengthens the category.
        """
        if guidance_scale == 1.0:
            return self.network(x_t, t, labels)
        null = torch.full_like(labels, self.null_label)
        both = self.network(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null]))
        conditional, unconditional = both.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _reverse(self, x: torch.Tensor, sampler: Scheduler, labels: torch.Tensor, guidance_scale: float = 1.0,
                 generator: torch.Generator | None = None,
                 callback: Callable[[int, torch.Tensor], None] | None = None,
                 known: torch.Tensor | None = None) -> torch.Tensor:
        """Run ``sampler``'s timesteps from ``x`` (the one reverse-diffusion loop of the project).

        ``known`` (B, K, ...): clean leading frames given as context at timestep 0 (a model trained
        with ``context_prob`` > 0); they are kept as they are."""
        for i, t in enumerate(sampler.timesteps.tolist()):
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            if known is not None:
                x[:, :known.shape[1]] = known
                t_batch = t_batch[:, None].repeat(1, x.shape[1])
                t_batch[:, :known.shape[1]] = 0
            output = self.guided_output(x, t_batch, labels, guidance_scale)
            x, _ = sampler.step(output.float(), t, x, generator)
            if callback is not None:
                callback(i, x)
        if known is not None:
            x[:, :known.shape[1]] = known
        return x

    @torch.no_grad()
    def sample(self, sampler: Scheduler, labels: torch.Tensor, guidance_scale: float = 1.0,
               generator: torch.Generator | None = None, snapshot_every: int | None = None,
               callback: Callable[[int, torch.Tensor], None] | None = None):
        """Generate clips for ``labels`` (B, T) with ``sampler`` (DDPM or DDIM).

        Returns ``(samples, snapshots)``: samples ``(B, T, x, y, z)`` (0 outside the mask) and a
        list of ``(t, x_t)`` taken every ``snapshot_every`` sampler steps (and at the end).
        """
        shape = (labels.shape[0], labels.shape[1], *self.mask.shape)
        x = torch.randn(shape, generator=generator, device=self.mask.device)
        timesteps = sampler.timesteps.tolist()
        snapshots = [(int(timesteps[0]) + 1, x.clone())] if snapshot_every else []

        def on_step(i: int, x_now: torch.Tensor) -> None:
            if snapshot_every and ((i + 1) % snapshot_every == 0 or i == len(timesteps) - 1):
                # labelled with the noise level x now has: the next timestep, 0 once clean
                snapshots.append((timesteps[i + 1] if i + 1 < len(timesteps) else 0, x_now.clone()))
            if callback is not None:
                callback(i, x_now)

        x = self._reverse(x, sampler, labels, guidance_scale, generator, on_step)
        return x * self.mask, snapshots

    @torch.no_grad()
    def reconstruct(self, x0: torch.Tensor, labels: torch.Tensor, t_start: int, steps: int,
                    noise: torch.Tensor) -> torch.Tensor:
        """Noise clean clips ``x0`` (B, T, x, y, z) to ``t_start`` with ``noise`` and denoise them back
        with ``steps`` deterministic DDIM steps (SDEdit / AnoDDPM): the model's idea of ``x0``."""
        stride = max(t_start // steps, 1)
        sampler = DDIMScheduler.from_scheduler(self.scheduler, [t_start - i * stride for i in range(steps)], eta=0.0)
        t0 = torch.full((x0.shape[0],), t_start, device=x0.device, dtype=torch.long)
        return self._reverse(self.scheduler.add_noise(x0, noise, t0), sampler, labels)

    @torch.no_grad()
    def inpaint_frames(self, x0: torch.Tensor, labels: torch.Tensor, known: torch.Tensor, t_start: int, steps: int,
                       noise: torch.Tensor) -> torch.Tensor:
        """The model's guess of the frames of ``x0`` (B, T, x, y, z) where ``known`` (T,) is false, from
        the frames where it is true (temporal inpainting by replacement, as in RePaint, with DDIM).

        The unknown frames start at ``t_start`` with no content of their own (noise only); before each
        of the ``steps`` deterministic DDIM steps the known frames are put back, noised to that step's
        level with ``noise``, so what the model learned about neighbouring frames is all that fills
        the gap. Returns a clip with the known frames as given and the unknown ones inferred."""
        known = known.to(x0.device).bool()
        if known.shape != x0.shape[1:2]:
            raise ValueError(f"known must have one flag per frame ({x0.shape[1]}); got shape {tuple(known.shape)}.")
        stride = max(t_start // steps, 1)
        sampler = DDIMScheduler.from_scheduler(self.scheduler, [t_start - i * stride for i in range(steps)], eta=0.0)
        frames = known[(None, slice(None)) + (None,) * (x0.ndim - 2)]
        t0 = torch.full((x0.shape[0],), t_start, device=x0.device, dtype=torch.long)
        x = self.scheduler.add_noise(torch.where(frames, x0, torch.zeros_like(x0)), noise, t0)
        for t in sampler.timesteps.tolist():
            t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
            x = torch.where(frames, self.scheduler.add_noise(x0, noise, t_batch), x)
            x, _ = sampler.step(self.network(x, t_batch, labels).float(), t, x)
        return torch.where(frames, x0, x)

    @torch.no_grad()
    def denoising_error(self, x0: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Masked mean squared error of the network's output against its target, per frame: ``(B, T)``
        (no loss weighting; what a diffusion classifier compares between candidate labels)."""
        return self.denoising_error_map(x0, labels, t, noise).flatten(2).sum(2) / self.mask.sum()

    @torch.no_grad()
    def denoising_error_map(self, x0: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Squared error of the network's output against its target per voxel, 0 outside the mask:
        the shape of ``x0`` (:meth:`denoising_error` is its per-frame mean over the mask)."""
        return self.denoising_residual(x0, labels, t, noise) ** 2

    @torch.no_grad()
    def denoising_residual(self, x0: torch.Tensor, labels: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The network's output minus its target per voxel, 0 outside the mask: the shape of ``x0``
        (its square is :meth:`denoising_error_map`; its covariance is what a metric between
        candidates can whiten)."""
        x_t = self.scheduler.add_noise(x0, noise, t)
        prediction = self.network(x_t, t, labels)
        return (prediction - self.scheduler.target(x0, noise, t)) * self.mask
