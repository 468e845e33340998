"""Load NIfTI files with clear, specific errors for corrupt, misshapen or misaligned inputs."""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import ModalMergeInputError


def load_nifti(path: str | Path, ndim: int | None = None, what: str = "image") -> nib.Nifti1Image:
    """Load a NIfTI and read all its data once, so truncation is caught here, not later.

    ``ndim`` (3 or 4) is the expected number of dimensions; a 4D image with one
    volume is accepted where 3D is expected and vice versa is refused.
    """
    path = Path(path)
    if not path.exists():
        raise ModalMergeInputError(f"{what} file not found: {path}. Check the path in config.yaml.")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except (EOFError, OSError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise ModalMergeInputError(
            f"Cannot read {what} {path}: {type(err).__name__}: {err}. The file is corrupt or "
            "truncated; fix its source (data in the download cache is checked and re-extracted by the fetch stage)."
        ) from err
    if ndim == 3 and data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if ndim is not None and data.ndim != ndim:
        raise ModalMergeInputError(
            f"{what} {path} has wrong dimensionality. Expected a {ndim}D image. Got shape {data.shape}."
        )
    if not np.all(np.isfinite(data)):
        n_bad = int(np.size(data) - np.isfinite(data).sum())
        raise ModalMergeInputError(
            f"{what} {path} contains {n_bad} NaN or infinite values. Replace them (e.g. with 0 "
            "outside the brain) or exclude those voxels from the mask."
        )
    return nib.Nifti1Image(np.asarray(data), img.affine, img.header)


def check_same_grid(img: nib.Nifti1Image, reference: nib.Nifti1Image, what: str, reference_what: str) -> None:
    """Raise if ``img`` is not on the voxel grid (shape and affine) of ``reference``."""
    if img.shape[:3] != reference.shape[:3]:
        raise ModalMergeInputError(
            f"{what} does not match the grid of {reference_what}. Expected shape {reference.shape[:3]}. "
            f"Got {img.shape[:3]}. Resample the mask to the BOLD grid (e.g. nilearn.image.resample_to_img)."
        )
    if not np.allclose(img.affine, reference.affine, atol=1e-3):
        raise ModalMergeInputError(
            f"{what} has a different affine from {reference_what}: the two images are not aligned.\n"
            f"Expected:\n{np.round(reference.affine, 3)}\nGot:\n{np.round(img.affine, 3)}\n"
            "Resample the mask to the BOLD grid (e.g. nilearn.image.resample_to_img)."
        )


def header_tr(image: nib.Nifti1Image) -> float | None:
    """The repetition time in seconds from a 4D NIfTI header, or None where the header does not say."""
    zoom = float(image.header.get_zooms()[3]) if len(image.header.get_zooms()) > 3 else 0.0
    unit = image.header.get_xyzt_units()[1]
    scale = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(unit)
    if zoom <= 0 or (scale is None and zoom == 1.0):  # 0 or an unlabelled 1: no TR recorded
        return None
    return zoom * (scale or 1.0)


def check_bold_values(image: nib.Nifti1Image, path: Path, limit: float = 1e10) -> None:
    """Refuse absurd intensities (a wrong scl_slope, a corrupt file); warn on integer data at its
    type's limits (values that overflowed or wrapped around when the file was written)."""
    data = np.asarray(image.dataobj)
    largest = float(np.abs(data).max()) if data.size else 0.0
    if largest > limit:
        raise ModalMergeInputError(
            f"BOLD {path} has values of magnitude up to {largest:.3g} (BOLD intensities are far below {limit:.0e}); "
            "z-scoring them overflows. The file is corrupt or scaled wrongly (check scl_slope/scl_inter).")
    stored = image.get_data_dtype()
    if np.issubdtype(stored, np.integer) and image.header.get_slope_inter() in ((None, None), (1.0, 0.0)):
        info = np.iinfo(stored)
        at_limit = int(np.sum((data == info.min) | (data == info.max)))
        if at_limit:
            warnings.warn(f"BOLD {path} is stored as {stored} and {at_limit} value(s) sit at the type's limits "
                          f"({info.min}, {info.max}): the data may have overflowed or wrapped around when written. "
                          "Check the export (float32 avoids it).", UserWarning, stacklevel=2)
