"""SpatioTemporalDenoiser: the network that predicts noise (or v) for a clip of fMRI volumes.

    clip x_t (B, T, X, Y, Z) ──pad──> frames (B*T, 1, X', Y', Z')
        conv_in
        encoder   level 0..L-1: ResidualBlock x n [+ SpatialSelfAttention on deep levels]
                  [+ TemporalConvolution on temporal levels], Downsample
        middle    ResidualBlock
                  SpatialSelfAttention      (voxels of a frame attend to each other)
                  TemporalTransformer       (each voxel attends across the T frames)
                  CrossModalAttention       (spatial tokens attend to the clip's temporal tokens)
                  ResidualBlock
        decoder   level L-1..0: Upsample, concat skip, ResidualBlock x n [+ attention] [+ temporal conv]
        conv_out ──crop──> prediction (B, T, X, Y, Z)

Every block is conditioned on the diffusion timestep and on each frame's category label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .embeddings import LabelEmbedding, TimestepEmbedding
from .spatial import Conv3d, Downsample, ResidualBlock, SpatialSelfAttention, Upsample, group_norm, kernel_for
from .temporal import CrossModalAttention, TemporalConvolution, TemporalTransformer


def padded_grid(grid: tuple[int, ...], levels: int) -> tuple[int, int, int]:
    """Pad every non-singleton axis up to a multiple of ``2 ** (levels - 1)`` (what the depth needs)."""
    factor = 2 ** (levels - 1)
    return tuple(n if n == 1 else -(-n // factor) * factor for n in grid)


def level_grids(grid: tuple[int, int, int], levels: int) -> list[tuple[int, int, int]]:
    grids = [grid]
    for _ in range(levels - 1):
        grids.append(tuple(n if n == 1 else n // 2 for n in grids[-1]))
    return grids


class SpatioTemporalDenoiser(nn.Module):
    """Conditional denoiser of fMRI clips ``(batch, T, x, y, z)``.

    Parameters
    ----------
    grid_shape : the volume grid (x, y, z); any shape, singleton axes handled natively.
    clip_length : T, the number of consecutive volumes in a clip.
    n_classes : number of labels (categories plus rest); index ``n_classes`` is the null label.
    channels : feature widths per level (default 32, 64, 128, 256).
    attention_levels : levels with spatial self-attention (default: the two deepest).
    temporal_levels : levels with a temporal convolution after their blocks, in encoder and
        decoder (default none: time is then mixed at the bottleneck only).
    """

    def __init__(self, grid_shape, clip_length: int, n_classes: int, channels=(32, 64, 128, 256),
                 attention_levels=None, res_blocks: int = 1, temporal_heads: int = 4, temporal_head_dim: int = 64,
                 norm_groups: int = 8, dropout: float = 0.0, gradient_checkpointing: bool = False,
                 temporal_levels=()):
        super().__init__()
        grid_shape = tuple(int(n) for n in grid_shape)
        channels = tuple(int(c) for c in channels)
        if len(grid_shape) != 3 or min(grid_shape) < 1:
            raise ValueError(f"grid_shape must be three positive sizes (x, y, z); got {grid_shape}.")
        if any(c % norm_groups for c in channels):
            raise ValueError(f"every entry of channels must be a multiple of norm_groups={norm_groups}; got {channels}.")
        if clip_length < 1 or n_classes < 1 or res_blocks < 1:
            raise ValueError(f"clip_length, n_classes and res_blocks must be >= 1; got {clip_length}, {n_classes}, {res_blocks}.")
        levels = len(channels)
        if attention_levels is None:
            attention_levels = tuple(range(max(levels - 2, 0), levels))
        if any(not 0 <= lvl < levels for lvl in attention_levels):
            raise ValueError(f"attention_levels must be in 0..{levels - 1}; got {tuple(attention_levels)}.")
        temporal_levels = tuple(temporal_levels or ())
        if any(not 0 <= lvl < levels for lvl in temporal_levels):
            raise ValueError(f"temporal_levels must be in 0..{levels - 1}; got {temporal_levels}.")
        self.grid_shape = grid_shape
        self.clip_length = clip_length
        self.n_classes = n_classes
        self.gradient_checkpointing = gradient_checkpointing
        self.padded_grid = padded_grid(grid_shape, levels)
        grids = level_grids(self.padded_grid, levels)
        embedding_dim = 4 * channels[0]

        self.timestep_embedding = TimestepEmbedding(channels[0], embedding_dim)
        self.label_embedding = LabelEmbedding(n_classes, embedding_dim)
        kernel = kernel_for(self.padded_grid, 3)
        self.conv_in = Conv3d(1, channels[0], kernel, padding=tuple(k // 2 for k in kernel))

        self.encoder = nn.ModuleList()
        previous = channels[0]
        for level, width in enumerate(channels):
            stage = nn.ModuleDict()
            stage["blocks"] = nn.ModuleList(
                ResidualBlock(previous if i == 0 else width, width, embedding_dim, grids[level], norm_groups, dropout)
                for i in range(res_blocks))
            stage["attention"] = SpatialSelfAttention(width, 4, norm_groups) if level in attention_levels else nn.Identity()
            if level in temporal_levels:
                stage["temporal"] = TemporalConvolution(width, norm_groups)
            stage["down"] = Downsample(width, grids[level]) if level < levels - 1 else nn.Identity()
            self.encoder.append(stage)
            previous = width

        deepest = channels[-1]
        self.middle_in = ResidualBlock(deepest, deepest, embedding_dim, grids[-1], norm_groups, dropout)
        self.middle_spatial = SpatialSelfAttention(deepest, 4, norm_groups)
        self.temporal = TemporalTransformer(deepest, clip_length, temporal_heads, temporal_head_dim)
        self.cross_modal = CrossModalAttention(deepest, temporal_heads, temporal_head_dim)
        self.middle_out = ResidualBlock(deepest, deepest, embedding_dim, grids[-1], norm_groups, dropout)

        self.decoder = nn.ModuleList()
        for level in reversed(range(levels)):
            width = channels[level]
            below = channels[level + 1] if level < levels - 1 else deepest
            stage = nn.ModuleDict()
            stage["up"] = Upsample(below, grids[level]) if level < levels - 1 else nn.Identity()
            stage["blocks"] = nn.ModuleList(
                ResidualBlock(below + width if i == 0 else width, width, embedding_dim, grids[level], norm_groups, dropout)
                for i in range(res_blocks))
            stage["attention"] = SpatialSelfAttention(width, 4, norm_groups) if level in attention_levels else nn.Identity()
            if level in temporal_levels:
                stage["temporal"] = TemporalConvolution(width, norm_groups)
            self.decoder.append(stage)

        self.norm_out = group_norm(channels[0], norm_groups)
        self.conv_out = Conv3d(channels[0], 1, kernel, padding=tuple(k // 2 for k in kernel))
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def null_label(self) -> int:
        return self.label_embedding.null_label

    def _block(self, block: ResidualBlock, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, embedding, use_reentrant=False)
        return block(h, embedding)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``x``: (B, T, X, Y, Z); ``timesteps``: (B,) or (B, T); ``labels``: (B, T) ints -> (B, T, X, Y, Z)."""
        h, skips, embedding = self._encode(x, timesteps, labels)
        h = self._block(self.middle_out, h, embedding)

        for stage in self.decoder:
            h = stage["up"](h)
            h = torch.cat([h, skips.pop()], dim=1)
            for block in stage["blocks"]:
                h = self._block(block, h, embedding)
            h = stage["attention"](h)
            if "temporal" in stage:
                h = stage["temporal"](h, x.shape[1])

        out = self.conv_out(F.silu(self.norm_out(h)))
        crop = (slice(None), 0) + tuple(slice(0, n) for n in self.grid_shape)
        return out[crop].reshape(x.shape[0], x.shape[1], *self.grid_shape)

    def _encode(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor):
        """Encoder and bottleneck up to the cross-modal attention: ``(h (B*T, C, *grid), skips, embedding)``."""
        batch, length = x.shape[:2]
        if tuple(x.shape[2:]) != self.grid_shape:
            raise ValueError(f"Input has wrong grid. Expected (B, T, {', '.join(map(str, self.grid_shape))}). Got {tuple(x.shape)}.")
        if length > self.clip_length:
            raise ValueError(f"Clip of {length} volumes is longer than the model's clip_length {self.clip_length}.")
        pad = []
        for have, want in zip(reversed(self.grid_shape), reversed(self.padded_grid)):
            pad += [0, want - have]
        frames = F.pad(x.reshape(batch * length, 1, *self.grid_shape), pad)
        # one timestep per clip (B,), or per frame (B, T): frames given as clean context sit at 0
        per_frame = (self.timestep_embedding(timesteps.reshape(-1)) if timesteps.ndim == 2
                     else self.timestep_embedding(timesteps).repeat_interleave(length, dim=0))
        embedding = per_frame + self.label_embedding(labels.reshape(-1))

        h = self.conv_in(frames)
        skips = []
        for stage in self.encoder:
            for block in stage["blocks"]:
                h = self._block(block, h, embedding)
            h = stage["attention"](h)
            if "temporal" in stage:
                h = stage["temporal"](h, length)
            skips.append(h)
            h = stage["down"](h)

        h = self._block(self.middle_in, h, embedding)
        h = self.middle_spatial(h)
        clip_features = h.reshape(batch, length, *h.shape[1:])
        temporal_features = self.temporal(clip_features)
        h = self.cross_modal(temporal_features, temporal_features).reshape(h.shape)
        return h, skips, embedding

    @property
    def bottleneck_grid(self) -> tuple[int, int, int]:
        """The feature-map grid at the bottleneck (after every downsampling)."""
        return level_grids(self.padded_grid, len(self.encoder))[-1]

    @torch.no_grad()
    def bottleneck_features(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Features after the temporal and cross-modal attention: ``(B, T, channels * positions)``."""
        h, _, _ = self._encode(x, timesteps, labels)
        return h.reshape(x.shape[0], x.shape[1], -1)

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor):
        """Attention of the bottleneck for inputs ``x`` (B, T, X, Y, Z): ``(spatial, temporal)``.

        spatial ``(B, X, Y, Z)``: attention each bottleneck location receives from the others
        (spatial self-attention, mean over queries and frames), upsampled to the volume grid;
        temporal ``(B, T, T)``: the temporal transformer's weights averaged over locations.
        """
        modules = (self.middle_spatial.attention, self.temporal.layers[-1].attention)
        for module in modules:
            module.record, module.last_weights = True, None
        try:
            self._encode(x, timesteps, labels)
            spatial_w, temporal_w = (module.last_weights for module in modules)  # (B*T, N, N), (B*N, T, T)
        finally:
            for module in modules:
                module.record, module.last_weights = False, None
        batch, length = x.shape[:2]
        bottleneck = self.bottleneck_grid
        received = spatial_w.mean(dim=1).reshape(batch, length, *bottleneck).mean(dim=1)  # (B, *bottleneck)
        upsampled = F.interpolate(received[:, None], size=self.padded_grid, mode="trilinear", align_corners=False)[:, 0]
        spatial = upsampled[(slice(None),) + tuple(slice(0, n) for n in self.grid_shape)]
        temporal = temporal_w.reshape(batch, -1, length, length).mean(dim=1)
        return spatial, temporal
