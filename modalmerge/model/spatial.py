"""Spatial parts of the denoiser: 3D residual blocks, resampling and self-attention.

A singleton axis (the 40x20x1 slice) is handled natively: its kernel size is 1 and it is never
downsampled, so a slice costs what a 2D network costs instead of 8x that after padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kernel_for(grid: tuple[int, int, int], size: int) -> tuple[int, int, int]:
    """Kernel (or stride) ``size`` on every axis longer than 1, 1 on singleton axes."""
    return tuple(size if n > 1 else 1 for n in grid)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (same parameters, same state dict) that runs as a 2D convolution when the last
    axis is singleton in both the kernel and the input (the embedded slice data): oneDNN's 2D kernels
    were measured 1.5-3x faster than its 3D ones for (3, 3, 1) kernels on 2 CPU cores, with
    identical outputs (``bench/README.md``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 1 and self.kernel_size[-1] == 1 and self.padding[-1] == 0 and self.stride[-1] == 1 \
                and self.padding_mode == "zeros":
            out = F.conv2d(x.squeeze(-1), self.weight.squeeze(-1), self.bias, self.stride[:2], self.padding[:2],
                           self.dilation[:2], self.groups)
            return out.unsqueeze(-1)
        return super().forward(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the embedding as a scale and shift between the convs."""

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int, grid: tuple[int, int, int],
                 norm_groups: int = 8, dropout: float = 0.0):
        super().__init__()
        kernel = kernel_for(grid, 3)
        padding = tuple(k // 2 for k in kernel)
        self.norm1 = group_norm(in_channels, norm_groups)
        self.conv1 = Conv3d(in_channels, out_channels, kernel, padding=padding)
        self.embedding = nn.Linear(embedding_dim, 2 * out_channels)
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = Conv3d(out_channels, out_channels, kernel, padding=padding)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.embedding(F.silu(embedding))[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class Downsample(nn.Module):
    """Strided conv halving every non-singleton axis."""

    def __init__(self, channels: int, grid: tuple[int, int, int]):
        super().__init__()
        kernel = kernel_for(grid, 3)
        self.conv = Conv3d(channels, channels, kernel, stride=kernel_for(grid, 2), padding=tuple(k // 2 for k in kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """A conv at the coarse resolution, then nearest-neighbour doubling of every non-singleton axis.

    Convolving before upsampling costs a quarter (a slice) or an eighth (3D) of the usual order.
    """

    def __init__(self, channels: int, grid: tuple[int, int, int]):
        super().__init__()
        self.scale = tuple(float(s) for s in kernel_for(grid, 2))
        kernel = kernel_for(grid, 3)
        self.conv = Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(x)
        # a slice: 2D nearest doubling, the same values and gradients, measured 1.03x faster forward
        if h.shape[-1] == 1 and self.scale[-1] == 1.0:
            return F.interpolate(h.squeeze(-1), scale_factor=self.scale[:2], mode="nearest").unsqueeze(-1)
        return F.interpolate(h, scale_factor=self.scale, mode="nearest")


class MultiHeadAttention(nn.Module):
    """Multi-head attention over token sequences using fused ``scaled_dot_product_attention``.

    With ``record`` set, the head-averaged attention weights of the last call are kept in
    ``last_weights`` (computed explicitly, for the interpretability figures only).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.record = False
        self.last_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q = self.to_q(x)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        if self.record:
            weights = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
            self.last_weights = weights.mean(dim=1).detach()
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class SpatialSelfAttention(nn.Module):
    """Self-attention among the voxels of one frame (tokens = positions of the feature map)."""

    def __init__(self, channels: int, heads: int = 4, norm_groups: int = 8):
        super().__init__()
        self.norm = group_norm(channels, norm_groups)
        self.attention = MultiHeadAttention(channels, heads, max(channels // heads, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (frames, positions, channels), contiguous: a transposed view makes bf16 linear layers expand
        # their weight per frame and multiply batch by batch (measured 1.2x slower forward on CPU)
        tokens = self.norm(x).flatten(2).transpose(1, 2).contiguous()
        out = self.attention(tokens).transpose(1, 2).reshape(x.shape)
        return x + out
