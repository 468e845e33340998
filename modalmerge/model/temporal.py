"""Temporal parts of the denoiser: a transformer across the T volumes of a clip, and
cross-modal attention letting every voxel's spatial features read the clip's temporal features."""

from __future__ import annotations

import torch
from torch import nn

from .spatial import MultiHeadAttention


class TemporalTransformerLayer(nn.Module):
    """Pre-norm self-attention across time, then a GELU feed-forward block."""

    def __init__(self, dim: int, heads: int, head_dim: int, ff_mult: int = 4):
        super().__init__()
        self.norm_attention = nn.LayerNorm(dim)
        self.attention = MultiHeadAttention(dim, heads, head_dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm_attention(x))
        return x + self.feed_forward(self.norm_ff(x))


class TemporalTransformer(nn.Module):
    """Attention across the T timepoints at every spatial position, with learnable positions.

    Input and output ``(batch, T, channels, *grid)``; the transformer width is
    ``heads * head_dim`` (4 x 64 by default), projected from and to ``channels``.
    """

    def __init__(self, channels: int, clip_length: int, heads: int = 4, head_dim: int = 64, depth: int = 1):
        super().__init__()
        width = heads * head_dim
        self.project_in = nn.Linear(channels, width) if channels != width else nn.Identity()
        self.positions = nn.Parameter(torch.zeros(1, clip_length, width))
        nn.init.normal_(self.positions, std=0.02)
        self.layers = nn.ModuleList(TemporalTransformerLayer(width, heads, head_dim) for _ in range(depth))
        self.project_out = nn.Linear(width, channels) if channels != width else nn.Identity()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape[:3]
        # (B, T, C, *grid) -> (B * positions, T, C): one sequence per voxel of the feature map
        tokens = x.flatten(3).permute(0, 3, 1, 2).reshape(-1, length, channels)
        h = self.project_in(tokens) + self.positions[:, :length]
        for layer in self.layers:
            h = layer(h)
        out = self.project_out(h)
        return x + out.reshape(batch, -1, length, channels).permute(0, 2, 3, 1).reshape(x.shape)

    def attention_weights(self) -> torch.Tensor | None:
        """Head-averaged ``(sequences, T, T)`` weights of the last layer's last call (if recording)."""
        return self.layers[-1].attention.last_weights


class TemporalConvolution(nn.Module):
    """A residual convolution across time at every voxel of a feature map (factorised space-time,
    as in video diffusion UNets): GroupNorm, SiLU, then a width-3 convolution over the T frames.

    Input and output ``(batch * T, channels, *grid)``; the output projection starts at zero, so a
    new layer leaves the network's function unchanged until it learns.
    """

    def __init__(self, channels: int, norm_groups: int = 8, kernel_size: int = 3):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor, length: int) -> torch.Tensor:
        frames, channels = h.shape[:2]
        batch = frames // length
        # (B*T, C, *grid) -> (B * positions, C, T): one time series per feature-map voxel
        series = torch.nn.functional.silu(self.norm(h)).reshape(batch, length, channels, -1)
        series = series.permute(0, 3, 2, 1).reshape(-1, channels, length)
        out = self.conv(series).reshape(batch, -1, channels, length).permute(0, 3, 2, 1)
        return h + out.reshape(h.shape)


class CrossModalAttention(nn.Module):
    """Spatial tokens of each frame (queries) attend to the clip's temporal tokens (keys, values).

    The temporal tokens are the temporal transformer's output averaged over space: one token
    per timepoint, so each voxel can pull in what happens elsewhere in the clip.
    """

    def __init__(self, channels: int, heads: int = 4, head_dim: int = 64):
        super().__init__()
        self.norm_spatial = nn.LayerNorm(channels)
        self.norm_temporal = nn.LayerNorm(channels)
        self.attention = MultiHeadAttention(channels, heads, head_dim, context_dim=channels)

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        """``spatial``: (B, T, C, *grid) features; ``temporal``: (B, T, C, *grid) temporal features."""
        batch, length, channels = spatial.shape[:3]
        queries = spatial.flatten(3).transpose(2, 3).reshape(batch * length, -1, channels)
        clip_tokens = temporal.flatten(3).mean(dim=3)  # (B, T, C)
        context = clip_tokens.repeat_interleave(length, dim=0)  # (B*T, T, C)
        out = self.attention(self.norm_spatial(queries), self.norm_temporal(context))
        out = out.reshape(batch, length, -1, channels).transpose(2, 3).reshape(spatial.shape)
        return spatial + out
