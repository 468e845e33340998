"""A denoiser that starts from the exact denoiser of a Gaussian fitted to the training volumes and learns
only what that Gaussian misses (``model.gaussian_baseline``).

For volumes x0 ~ N(mu_c, S) (mu_c the training runs' mean of category c, S the Ledoit-Wolf covariance of
the training volumes around their category means) the posterior mean of x0 given x_t is the Wiener filter

    E[x0 | x_t, c] = mu_c + S (S + lambda_t I)^(-1) (x_t / sqrt(abar_t) - mu_c),  lambda_t = (1 - abar_t) / abar_t.

On held-out fMRI this filter denoised better than the trained network at every noise level from
t = 200 up (bench/README section 41), so a network that must learn the mean and covariance from
scratch starts behind it. :class:`GaussianBaselineDenoiser` adds the network's output to the filter's
(in the network's own target, eps or v): with the output convolution zero-initialised, the untrained
model *is* the Gaussian, and training can only add what the data show beyond it.

With ``temporal`` (``model.gaussian_baseline_temporal``) the Gaussian also knows how each component of S moves
within a clip: component j's time series has covariance lambda_j R_j (R_j its temporal correlation, T x T), and
the filter is solved per component over the clip's frames, lambda_j R_j (lambda_j R_j + D_t)^(-1) with D_t the
frames' noise (diagonal, so frames at different noise levels are allowed): each frame is denoised with the help
of its neighbours, as :class:`~modalmerge.diffusion.posterior_noise.GaussianPrior` already does for the sampler.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .posterior_noise import temporal_components
from .schedulers import PredictionType, Scheduler


class GaussianBaselineDenoiser(nn.Module):
    """``network``'s output plus the Wiener filter's, for a ``mask`` (grid) of V voxels and ``n_classes``
    categories (the null label, ``network.null_label``, gets the overall mean). The Gaussian's mean, basis
    and eigenvalues are buffers (saved with the weights); :meth:`fit` sets them from training volumes. With
    ``temporal``, a buffer ``frame_covariance`` (V, T, T) holds each component's covariance across a clip's T
    frames (``clip_length`` of the network)."""

    def __init__(self, network: nn.Module, mask: np.ndarray, n_classes: int, scheduler: Scheduler,
                 temporal: bool = False):
        super().__init__()
        self.network = network
        inside = torch.as_tensor(np.asarray(mask)).bool()
        n = int(inside.sum())
        self.register_buffer("index", torch.nonzero(inside.flatten()).flatten())
        self.register_buffer("means", torch.zeros(n_classes + 1, n))  # row null_label: the overall mean
        self.register_buffer("basis", torch.eye(n))
        self.register_buffer("values", torch.zeros(n))  # all 0 until fit: the filter returns the mean
        self.register_buffer("abar", scheduler.alphas_cumprod.float().clone())
        if temporal:  # all 0 until fit, like values
            self.register_buffer("frame_covariance", torch.zeros(n, network.clip_length, network.clip_length))
        self.epsilon = scheduler.prediction_type is PredictionType.EPSILON

    @property
    def null_label(self) -> int:
        return self.network.null_label

    @property
    def temporal(self) -> bool:
        return "frame_covariance" in self._buffers

    @property
    def clip_length(self) -> int:
        return self.network.clip_length

    def bottleneck_features(self, *args, **kwargs):
        return self.network.bottleneck_features(*args, **kwargs)

    def attention_maps(self, *args, **kwargs):
        return self.network.attention_maps(*args, **kwargs)

    def with_network(self, network: nn.Module) -> "GaussianBaselineDenoiser":
        """The same Gaussian (buffers shared, not copied) around another ``network``."""
        twin = GaussianBaselineDenoiser.__new__(GaussianBaselineDenoiser)
        nn.Module.__init__(twin)
        twin.network = network
        for name, buffer in self.named_buffers(recurse=False):
            twin.register_buffer(name, buffer)
        twin.epsilon = self.epsilon
        return twin

    def fit(self, volumes: np.ndarray, labels: np.ndarray, covariance: np.ndarray, temporal: np.ndarray | None = None,
            basis: np.ndarray | None = None) -> "GaussianBaselineDenoiser":
        """Set the Gaussian from training volumes ``(n, *grid)``, their category ids ``(n,)`` and the covariance
        ``(V, V)`` of the volumes around their category means (inside the mask; e.g.
        :func:`~modalmerge.analysis.generator_baselines.within_category_covariance`). A ``temporal`` model also
        needs ``temporal`` (V, T, T), the temporal correlation of each column of the orthonormal ``basis`` (V, V)
        (e.g. :func:`~modalmerge.analysis.generator_baselines.component_temporal_correlation`)."""
        flat = np.asarray(volumes, np.float64).reshape(len(volumes), -1)[:, self.index.cpu().numpy()]
        labels = np.asarray(labels)
        if len(flat) != len(labels):
            raise ValueError(f"{len(flat)} volumes but {len(labels)} labels.")
        n = flat.shape[1]
        covariance = np.asarray(covariance, np.float64)
        if covariance.shape != (n, n):
            raise ValueError(f"the covariance is {covariance.shape} but the mask has {n} voxels.")
        means = np.repeat(flat.mean(0, keepdims=True), len(self.means), axis=0)
        for c in np.unique(labels):
            if not 0 <= c < self.null_label:
                raise ValueError(f"label {c} is outside 0..{self.null_label - 1}.")
            means[c] = flat[labels == c].mean(0)
        if self.temporal != (temporal is not None):
            raise ValueError("a temporal baseline needs temporal= and basis=; a spatial one takes neither."
                             if self.temporal else "this baseline is spatial (model.gaussian_baseline_temporal is false): pass no temporal=.")
        if temporal is None:
            values, basis = np.linalg.eigh(covariance)
        else:
            temporal = np.asarray(temporal, np.float64)
            values, basis = temporal_components(covariance, temporal, basis, self.frame_covariance.shape)
        values = np.clip(values, 0, None)
        device = self.means.device
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        self.means.copy_(as_tensor(means))
        self.basis.copy_(as_tensor(basis))
        self.values.copy_(as_tensor(values))
        if temporal is not None:
            self.frame_covariance.copy_(as_tensor(values[:, None, None] * temporal))
        return self

    def baseline(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The Wiener filter's output in the network's target (eps or v), 0 outside the mask, float32."""
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            flat = x_t.float().flatten(2)[..., self.index]  # (B, T, V)
            abar = self.abar[t]
            abar = (abar[:, None] if abar.ndim == 1 else abar)[..., None]  # (B, 1 or T, 1)
            mean = self.means[labels]
            noise = (1 - abar) / abar  # (B, 1 or T, 1): the noise variance of x_t / sqrt(abar_t)
            components = (flat / abar.sqrt() - mean) @ self.basis  # (B, T, V)
            if self.temporal:
                components = self.across_frames(components, noise)
            else:
                components = components * self.values / (self.values + noise)
            x0 = mean + components @ self.basis.T
            if self.epsilon:
                target = (flat - abar.sqrt() * x0) / (1 - abar).sqrt()
            else:
                target = (abar.sqrt() * flat - x0) / (1 - abar).sqrt()
            out = torch.zeros(*x_t.shape[:2], x_t[0, 0].numel(), device=x_t.device)
            out[..., self.index] = target
            return out.reshape(x_t.shape)

    def across_frames(self, components: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Each component's filter over the clip's frames, C_j (C_j + D)^(-1) y_j with C_j = ``frame_covariance[j]``
        and D the frames' ``noise`` variances: ``components`` (B, T, V) in, the same shape out (float64 solve)."""
        frames = self.frame_covariance.shape[-1]
        if components.shape[1] != frames:
            raise ValueError(f"the temporal baseline covers clips of {frames} frames; got {components.shape[1]}.")
        covariance = self.frame_covariance.double()  # (V, T, T)
        noise = torch.diag_embed(noise.double().expand(-1, components.shape[1], 1)[..., 0])  # (B, T, T)
        y = components.double().transpose(1, 2)[..., None]  # (B, V, T, 1)
        filtered = covariance @ torch.linalg.solve(covariance + noise[:, None], y)
        return filtered[..., 0].transpose(1, 2).float()

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.network(x_t, t, labels) + self.baseline(x_t, t, labels)
