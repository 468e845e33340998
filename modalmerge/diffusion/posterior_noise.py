"""The noise DDIM leaves out when it plugs in the network's guess of x0 (``sample.variance:
gaussian_posterior``), drawn from a Gaussian approximation of the data.

A step's mean is linear in x0 with coefficient ``c``; the exact reverse step of Gaussian data with
covariance Σ adds ``c^2`` times the posterior covariance of x0 given x_t, ``(Σ^-1 + snr I)^-1`` with
``snr = abar_t / (1 - abar_t)``. :class:`GaussianPrior` holds Σ in an eigenbasis, where that
posterior is diagonal:

* frames independent: Σ is the spatial covariance S of every frame (``V x V``), eigenvalues λ_j;
* frames correlated: Σ is separable per spatial component, Σ = Σ_j λ_j (R_j ⊗ u_j u_j^T), where u_j are
  S's eigenvectors and R_j (``T x T``) the temporal correlation of component j within a clip. Each
  component's temporal problem is then diagonal in R_j's eigenvectors, with eigenvalues λ_j ρ_ij.
  The strong components of fMRI are slow (lag-1 correlation 0.6-0.8) and the weak ones white, so one
  shared temporal correlation would not do.
"""

from __future__ import annotations

import numpy as np
import torch


def temporal_components(covariance: np.ndarray, temporal: np.ndarray, basis, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Check a spatiotemporal Gaussian's parts: ``temporal`` (the correlation within a clip of each column of
    ``basis``) must have ``shape`` (V, T, T) and ``basis`` must be orthonormal (V, V). Returns the variance of
    ``covariance`` (V, V) along each column, and the basis (float64)."""
    basis = np.asarray(basis, np.float64)
    n = len(covariance)
    if basis.shape != (n, n) or temporal.shape != tuple(shape):
        raise ValueError(f"basis must be {(n, n)} and temporal {tuple(shape)}; got {basis.shape} and {temporal.shape}.")
    if not np.allclose(basis.T @ basis, np.eye(n), atol=1e-6):
        raise ValueError("basis must be orthonormal (e.g. the covariance's eigenvectors).")
    return np.einsum("vj,vw,wj->j", basis, covariance, basis), basis


class GaussianPrior:
    """``mask`` (grid) with V voxels inside; ``covariance`` (V, V); ``temporal`` None or (V, T, T): the
    temporal correlation of the data's component along each column of ``basis`` (V, V; orthonormal), which
    is then required; without ``temporal`` the basis is the covariance's eigenvectors."""

    def __init__(self, mask, covariance, temporal=None, basis=None):
        self.mask = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
        covariance = np.asarray(covariance, np.float64)
        n = int(self.mask.sum())
        if covariance.shape != (n, n):
            raise ValueError(f"the covariance is {covariance.shape} but the mask has {n} voxels.")
        if temporal is None:
            values, basis = (part.numpy() for part in torch.linalg.eigh(torch.as_tensor(covariance)))
            self.temporal = None
        else:
            if basis is None:
                raise ValueError("a temporal prior refers to the components of a spatial basis; pass basis= as well.")
            temporal = np.asarray(temporal, np.float64)
            frames = temporal.shape[-1] if temporal.ndim else 0
            values, basis = temporal_components(covariance, temporal, basis, (n, frames, frames))
            rho, frames = np.linalg.eigh(temporal)
            self.temporal = (torch.as_tensor(np.clip(rho, 0, None)), torch.as_tensor(frames))  # (V, T), (V, T, T)
        self.values = torch.as_tensor(np.clip(values, 0, None))
        self.basis = torch.as_tensor(basis)

    @property
    def clip_length(self) -> int | None:
        return None if self.temporal is None else self.temporal[0].shape[1]

    def to(self, device) -> "GaussianPrior":
        for name in ("mask", "values", "basis"):
            setattr(self, name, getattr(self, name).to(device))
        if self.temporal is not None:
            self.temporal = tuple(part.to(device) for part in self.temporal)
        return self

    def posterior_noise(self, sample: torch.Tensor, c: float, snr: float, generator) -> torch.Tensor:
        """A draw of ``c`` times x0's posterior given x_t at signal-to-noise ``snr``, shaped like ``sample``
        (B, T, grid); zero outside the mask."""
        if self.mask.device != sample.device:  # once per device, not once per step
            self.to(sample.device)
        n_frames = sample.shape[1]
        z = torch.randn((sample.shape[0], n_frames, len(self.values)), generator=generator, device=sample.device,
                        dtype=torch.float64)
        if self.temporal is None:
            z = z * c * (self.values / (1 + self.values * snr)).sqrt()
        else:
            rho, frames = self.temporal
            if n_frames != rho.shape[1]:
                raise ValueError(f"the temporal prior covers clips of {rho.shape[1]} frames; got {n_frames}.")
            variance = self.values[:, None] * rho  # (V, T): each component's variance along each of R_j's eigenvectors
            z = z * c * (variance / (1 + variance * snr)).sqrt().T
            z = torch.einsum("jti,bij->btj", frames, z)  # back from R_j's eigenvectors to frames
        noise = torch.zeros_like(sample)
        noise[:, :, self.mask] = (z @ self.basis.T).to(sample.dtype)
        return noise
