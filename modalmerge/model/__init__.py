"""The denoising network: a spatial 3D UNet per frame, a temporal transformer across frames,
and cross-modal attention between the two."""

from .denoiser import SpatioTemporalDenoiser

__all__ = ["SpatioTemporalDenoiser"]
