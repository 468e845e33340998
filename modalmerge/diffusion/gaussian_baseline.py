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
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

from .schedulers import PredictionType, Scheduler


class GaussianBaselineDenoiser(nn.Module):
    """``network``'s output plus the Wiener filter's, for a ``mask`` (grid) of V voxels and ``n_classes``
    categories (the null label, ``network.null_label``, gets the overall mean). The Gaussian's mean, basis
    and eigenvalues are buffers (saved with the weights); :meth:`fit` sets them from training volumes."""

    def __init__(self, network: nn.Module, mask: np.ndarray, n_classes: int, scheduler: Scheduler):
        super().__init__()
        self.network = network
        inside = torch.as_tensor(np.asarray(mask)).bool()
        n = int(inside.sum())
        self.register_buffer("index", torch.nonzero(inside.flatten()).flatten())
        self.register_buffer("means", torch.zeros(n_classes + 1, n))  # row null_label: the overall mean
        self.register_buffer("basis", torch.eye(n))
        self.register_buffer("values", torch.zeros(n))  # all 0 until fit: the filter returns the mean
        self.register_buffer("abar", scheduler.alphas_cumprod.float().clone())
        self.epsilon = scheduler.prediction_type is PredictionType.EPSILON

    @property
    def null_label(self) -> int:
        return self.network.null_label

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

    def fit(self, volumes: np.ndarray, labels: np.ndarray) -> "GaussianBaselineDenoiser":
        """Set the Gaussian from training volumes ``(n, *grid)`` and their category ids ``(n,)``."""
        flat = np.asarray(volumes, np.float64).reshape(len(volumes), -1)[:, self.index.cpu().numpy()]
        labels = np.asarray(labels)
        if len(flat) != len(labels):
            raise ValueError(f"{len(flat)} volumes but {len(labels)} labels.")
        means = np.repeat(flat.mean(0, keepdims=True), len(self.means), axis=0)
        for c in np.unique(labels):
            if not 0 <= c < self.null_label:
                raise ValueError(f"label {c} is outside 0..{self.null_label - 1}.")
            means[c] = flat[labels == c].mean(0)
        values, basis = np.linalg.eigh(LedoitWolf().fit(flat - means[labels]).covariance_)
        device = self.means.device
        self.means.copy_(torch.as_tensor(means, dtype=torch.float32, device=device))
        self.basis.copy_(torch.as_tensor(basis, dtype=torch.float32, device=device))
        self.values.copy_(torch.as_tensor(np.clip(values, 0, None), dtype=torch.float32, device=device))
        return self

    def baseline(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The Wiener filter's output in the network's target (eps or v), 0 outside the mask, float32."""
        with torch.autocast(device_type=x_t.device.type, enabled=False):
            flat = x_t.float().flatten(2)[..., self.index]  # (B, T, V)
            abar = self.abar[t]
            abar = (abar[:, None] if abar.ndim == 1 else abar)[..., None]  # (B, 1 or T, 1)
            mean = self.means[labels]
            shrink = self.values / (self.values + (1 - abar) / abar)  # (B, 1 or T, V)
            x0 = mean + ((flat / abar.sqrt() - mean) @ self.basis * shrink) @ self.basis.T
            if self.epsilon:
                target = (flat - abar.sqrt() * x0) / (1 - abar).sqrt()
            else:
                target = (abar.sqrt() * flat - x0) / (1 - abar).sqrt()
            out = torch.zeros(*x_t.shape[:2], x_t[0, 0].numel(), device=x_t.device)
            out[..., self.index] = target
            return out.reshape(x_t.shape)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.network(x_t, t, labels) + self.baseline(x_t, t, labels)
