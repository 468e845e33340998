"""Interpretability: the trained model's attention on (noised) clips, through its public method."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def attention_maps(diffusion, clips: np.ndarray, labels: np.ndarray, t: int = 100, seed: int = 0):
    """Attention of the bottleneck on clips ``(n, T, x, y, z)`` noised to timestep ``t``:
    ``(spatial (n, x, y, z) inside the mask, temporal (n, T, T))`` (see
    :meth:`~modalmerge.model.SpatioTemporalDenoiser.attention_maps`)."""
    device = diffusion.mask.device
    x0 = torch.as_tensor(clips, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    t_batch = torch.full((len(x0),), t, device=device, dtype=torch.long)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    x_t = diffusion.scheduler.add_noise(x0, noise, t_batch)
    spatial, temporal = diffusion.network.attention_maps(x_t, t_batch, torch.as_tensor(labels, dtype=torch.long, device=device))
    spatial = spatial.cpu().numpy() * diffusion.mask.cpu().numpy()
    return spatial.astype(np.float32), temporal.cpu().numpy().astype(np.float32)
