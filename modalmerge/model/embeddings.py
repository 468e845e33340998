"""Embeddings of the diffusion timestep and of the per-volume category."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (possibly fractional) timesteps: ``(B,) -> (B, dim)``."""
    half = dim // 2
    frequencies = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device, dtype=torch.float32) / half)
    angles = timesteps.float()[:, None] * frequencies[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = torch.nn.functional.pad(embedding, (0, 1))
    return embedding


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the timestep followed by a two-layer MLP."""

    def __init__(self, base_channels: int, embedding_dim: int):
        super().__init__()
        self.base_channels = base_channels
        self.mlp = nn.Sequential(nn.Linear(base_channels, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(timesteps, self.base_channels))


class LabelEmbedding(nn.Module):
    """One learned vector per category plus a ``null`` token (index ``n_classes``) for guidance."""

    def __init__(self, n_classes: int, embedding_dim: int):
        super().__init__()
        self.n_classes = n_classes
        self.table = nn.Embedding(n_classes + 1, embedding_dim)

    @property
    def null_label(self) -> int:
        return self.n_classes

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.table(labels)
