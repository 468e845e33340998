"""The diffusion detector: what the trained model cannot reconstruct is anomalous."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..diffusion.gaussian import GaussianDiffusion
from ..diffusion.gaussian_baseline import GaussianBaselineDenoiser
from .detectors import ClipDetector, frame_max, smooth


class ZeroPrediction(nn.Module):
    """A denoiser that predicts 0 everywhere: what the project's denoiser predicts at initialisation
    (its output convolution is zero-initialised), without the cost of running it."""

    def __init__(self, null_label: int):
        super().__init__()
        self.null_label = null_label

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x_t)


def untrained_control(diffusion: GaussianDiffusion) -> GaussianDiffusion:
    """The same diffusion process (schedule, mask, prediction type) with the network's output fixed at
    0, i.e. the model before any training step: a :class:`DiffusionDetector` built on it keeps every
    step of the detector (noising, DDIM reconstruction, calibration, smoothing) and knows nothing about
    the data, so what the trained model adds is the difference between the two. A model with
    ``model.gaussian_baseline`` keeps its Gaussian: untrained, it is that Gaussian's exact denoiser."""
    network = ZeroPrediction(diffusion.null_label)
    if isinstance(diffusion.network, GaussianBaselineDenoiser):  # untrained, it is the Gaussian's denoiser
        network = diffusion.network.with_network(network)
    control = GaussianDiffusion(network, diffusion.scheduler, diffusion.mask,
                                diffusion.label_dropout, diffusion.min_snr_gamma, diffusion.context_prob)
    return control.to(diffusion.mask.device).eval()  # the schedule's buffer is built on the CPU


class DiffusionDetector(ClipDetector):
    """Partially noise each clip to ``t_start``, denoise it with the trained model (DDIM, ``steps``),
    and score the residual, averaged over ``n_draws`` noise draws.

    The residual is standardised voxelwise by its mean and std on clips of the training runs
    (calibration at ``fit``, no labels), so the model's ordinary error is not mistaken for an
    anomaly; the voxel map is then smoothed like the z-score matched filter. Conditioning uses the
    known ``design`` labels of each clip (the experiment's timing is known, anomalies are not);
    without them, every frame gets label 0.

    ``average`` says what is averaged over the draws: ``"residual"`` (default) the squared residual of
    each draw's reconstruction; ``"reconstruction"`` the reconstructions, whose mean is then compared
    with the clip (the sampling noise each draw re-injects averages out before it is squared).
    """

    def __init__(self, mask=None, diffusion=None, t_start: int = 200, steps: int = 2, n_draws: int = 2,
                 smoothing: float = 1.0, batch_size: int = 32, seed: int = 0, average: str = "residual"):
        super().__init__(mask)
        if average not in ("residual", "reconstruction"):
            raise ValueError(f"average is {average!r}: use 'residual' (mean squared residual over draws) or "
                             "'reconstruction' (squared residual of the mean reconstruction).")
        self.average = average
        self.diffusion = diffusion
        self.t_start = t_start
        self.steps = steps
        self.n_draws = n_draws
        self.smoothing = smoothing
        self.batch_size = batch_size
        self.seed = seed

    def batches(self, clips: np.ndarray, design: np.ndarray | None, generator: torch.Generator):
        """``(rows, x0, labels, noise)`` for each batch of ``clips`` on the model's device: the rows of
        ``clips`` it covers, the clean clips, their design labels (0 when ``design`` is None) and a noise
        draw from ``generator`` (drawn batch by batch, in order)."""
        design = np.zeros(clips.shape[:2], int) if design is None else design
        device = self.diffusion.mask.device
        for s in range(0, len(clips), self.batch_size):
            rows = slice(s, s + self.batch_size)
            x0 = torch.as_tensor(clips[rows], device=device)
            labels = torch.as_tensor(design[rows], dtype=torch.long, device=device)
            yield rows, x0, labels, torch.randn(x0.shape, generator=generator).to(device)

    def residuals(self, clips: np.ndarray, design: np.ndarray | None = None) -> np.ndarray:
        """Squared residual of the reconstruction, averaged over ``n_draws`` as ``average`` says: same
        shape as ``clips``."""
        generator = torch.Generator().manual_seed(self.seed)
        out = np.zeros(clips.shape, np.float32)
        for _ in range(self.n_draws):
            for rows, x0, labels, noise in self.batches(clips, design, generator):
                x = self.diffusion.reconstruct(x0, labels, self.t_start, self.steps, noise)
                residual = (x - x0) * self.diffusion.mask
                if self.average == "residual":
                    residual = residual ** 2
                out[rows] += residual.float().cpu().numpy() / self.n_draws
        return out if self.average == "residual" else out ** 2

    def _fit(self, clips, design):
        residual = self.residuals(clips, design)
        self.mean_ = residual.mean(axis=(0, 1))
        self.std_ = np.maximum(residual.std(axis=(0, 1)), 1e-6)

    def _maps(self, clips, design):
        standardised = (self.residuals(clips, design) - self.mean_) / self.std_ * self.mask_
        return smooth(standardised, self.mask_, self.smoothing) if self.smoothing else standardised

    def _clip_scores(self, clips, maps):
        return frame_max(maps, self.mask_)
