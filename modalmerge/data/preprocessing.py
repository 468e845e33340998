"""mask-and-normalize, the science: masked, detrended, per-run z-scored volumes with labels, runs
and the split (the stage runner in :mod:`modalmerge.stages.prepare` writes them)."""

from __future__ import annotations

from typing import NamedTuple

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn.maskers import NiftiMasker
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .. import REST_LABEL
from ..errors import ModalMergeInputError
from .dataset import PreparedData, RunSplit
from .layout import Dataset
from .nifti import check_same_grid, load_nifti


def label_volumes(events: pd.DataFrame, n_volumes: int, tr: float, shift_volumes: int = 0) -> np.ndarray:
    """Category of each volume of a run, or ``rest``: shape ``(n_volumes,)``.

    Volume ``i`` (acquired at ``i * tr``) takes the category of the event that covers time
    ``(i - shift_volumes) * tr``; a positive shift accounts for the hemodynamic delay.
    """
    labels = np.full(n_volumes, REST_LABEL, dtype=object)
    times = (np.arange(n_volumes) - shift_volumes) * tr
    for event in events.itertuples():
        inside = (times >= event.onset - 1e-6) & (times < event.onset + event.duration - 1e-6)
        labels[inside] = event.trial_type
    return labels.astype(str)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The tightest box around the mask's non-zero voxels, one slice per axis."""
    if not mask.any():
        raise ModalMergeInputError("The mask is empty: no voxel is inside it (after removing constant voxels, if "
                                   "prep.drop_constant_voxels is on). Choose another prep.mask or check the mask file.")
    index = np.argwhere(mask)
    low, high = index.min(axis=0), index.max(axis=0) + 1
    return tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high))


class VolumeNormalizer(BaseEstimator):
    """Mask, detrend and z-score BOLD runs; return volumes on the mask's bounding-box grid.

    A thin estimator over :class:`nilearn.maskers.NiftiMasker` (per-run cleaning through its
    ``runs`` argument) that adds the bounding-box view the diffusion model works on.

    Parameters
    ----------
    mask_img : Nifti1Image
        Mask on the BOLD grid.
    detrend, standardize : passed to NiftiMasker (``standardize`` e.g. ``"zscore_sample"`` or False).
    drop_constant_voxels : bool
        If True, voxels constant within a run are removed from the mask; if False they are an error.
    """

    def __init__(self, mask_img, detrend=True, standardize="zscore_sample", drop_constant_voxels=False, t_r=None):
        self.mask_img = mask_img
        self.detrend = detrend
        self.standardize = standardize
        self.drop_constant_voxels = drop_constant_voxels
        self.t_r = t_r

    def fit(self, bolds: list[nib.Nifti1Image], runs: list[int]):
        """Check grids and constant voxels; set ``mask_``, ``bbox_``, ``masker_``."""
        mask = np.asarray(self.mask_img.dataobj) > 0
        for bold, run in zip(bolds, runs):
            check_same_grid(bold, self.mask_img, f"BOLD of run {run}", "the mask")
            data = np.asarray(bold.dataobj)[mask]
            constant = data.std(axis=1) == 0
            if constant.any():
                if not self.drop_constant_voxels:
                    raise ModalMergeInputError(
                        f"{int(constant.sum())} voxel(s) inside the mask are constant over run {run}, so they cannot be "
                        "z-scored. Choose a tighter mask (prep.mask) or set prep.drop_constant_voxels: true."
                    )
                flat = np.flatnonzero(mask)
                mask.flat[flat[constant]] = False
        self.mask_ = mask
        self.bbox_ = bounding_box(mask)
        self.masker_ = NiftiMasker(
            mask_img=nib.Nifti1Image(mask.astype(np.uint8), self.mask_img.affine),
            detrend=self.detrend, standardize=self.standardize, t_r=self.t_r,
        )
        self.masker_.fit()
        return self

    def transform(self, bolds: list[nib.Nifti1Image], runs: list[int]) -> np.ndarray:
        """Cleaned signals, shape ``(n_volumes, n_voxels)``, each run cleaned on its own."""
        check_is_fitted(self, "masker_")
        signals = []
        for bold, run in zip(bolds, runs):
            cleaned = self.masker_.transform(bold).astype(np.float32)
            # a voxel that comes out constant or non-finite was not cleanable (e.g. values near 1e30
            # overflow the variance): refuse rather than train on zeros
            broken = ~np.isfinite(cleaned).all(axis=0)
            if self.standardize:
                broken |= cleaned.std(axis=0) == 0
            if broken.any():
                raise ModalMergeInputError(
                    f"{int(broken.sum())} voxel(s) of run {run} are constant or not finite after detrending and "
                    "z-scoring (extreme or corrupt values in the BOLD file). Check the run's data, or exclude those "
                    "voxels with a tighter mask (prep.mask).")
            signals.append(cleaned)
        return np.concatenate(signals)

    def to_grid(self, signals: np.ndarray) -> np.ndarray:
        """``(n_volumes, n_voxels)`` -> volumes on the bounding-box grid ``(n_volumes, x, y, z)``, 0 outside."""
        check_is_fitted(self, "mask_")
        full = np.zeros((signals.shape[0],) + self.mask_.shape, dtype=np.float32)
        full[:, self.mask_] = signals
        return full[(slice(None),) + self.bbox_]

    def raw_to_grid(self, bolds: list[nib.Nifti1Image]) -> np.ndarray:
        """Uncleaned intensities on the bounding-box grid, 0 outside the mask: ``(n_volumes, x, y, z)``."""
        check_is_fitted(self, "mask_")
        volumes = np.concatenate([np.moveaxis(np.asarray(b.dataobj, dtype=np.float32), 3, 0) for b in bolds])
        volumes[:, ~self.mask_] = 0
        return volumes[(slice(None),) + self.bbox_]

    @property
    def bbox_affine_(self) -> np.ndarray:
        """Affine of the bounding-box grid (the source affine shifted to the box's corner)."""
        offset = np.eye(4)
        offset[:3, 3] = [s.start for s in self.bbox_]
        return self.mask_img.affine @ offset


class Preprocessed(NamedTuple):
    """What :func:`preprocess` returns: the prepared data, the split, and what the NIfTI outputs need."""

    data: PreparedData
    split: RunSplit
    normalizer: VolumeNormalizer
    signals: np.ndarray          # (n_volumes, n_voxels) cleaned signals of all runs
    mask_img: nib.Nifti1Image
    bolds: list


def preprocess(dataset: Dataset, mask: str = "auto", detrend: bool = True, standardize="zscore_sample",
               hemodynamic_shift_volumes: int = 0, test_runs: list[int] | None = None, n_folds: int | None = None,
               drop_constant_voxels: bool = False, exclude_runs: list[int] | None = None) -> Preprocessed:
    """mask-and-normalize for one dataset in the normalised layout (``mask`` ``auto``: ``brain`` where
    the source has it, else ``nonzero``); the split's held-out runs default to the last three kept;
    ``exclude_runs`` are left out of everything (recorded in the split)."""
    if mask == "auto":
        mask = "brain" if "brain" in dataset.manifest["masks"] else "nonzero"
    mask_img = load_nifti(dataset.mask_path(mask), ndim=3, what=f"mask '{mask}'")
    if not np.asarray(mask_img.dataobj).any():
        raise ModalMergeInputError(
            f"The mask '{mask}' ({dataset.mask_path(mask)}) is empty: no voxel is inside it. Set prep.mask to another of "
            f"{sorted(dataset.manifest['masks'])}, or fix the mask file of your study (data.custom.mask).")
    kept = [r for r in dataset.runs if r not in (exclude_runs or [])]
    split = RunSplit.from_config(dataset.runs, list(test_runs if test_runs is not None else kept[-3:]), n_folds,
                                 exclude_runs)
    runs = kept  # exclude_runs checked against the data by the split
    bolds = [load_nifti(dataset.bold_path(r), ndim=4, what=f"BOLD of run {r}") for r in runs]

    normalizer = VolumeNormalizer(mask_img, detrend, standardize, drop_constant_voxels, dataset.tr).fit(bolds, runs)
    signals = normalizer.transform(bolds, runs)

    labels, run_of_volume, index_in_run = [], [], []
    for run, bold in zip(runs, bolds):
        n = bold.shape[3]
        labels.append(label_volumes(dataset.events(run), n, dataset.tr, hemodynamic_shift_volumes))
        run_of_volume.append(np.full(n, run))
        index_in_run.append(np.arange(n))
    labels = np.concatenate(labels)
    run_of_volume = np.concatenate(run_of_volume)
    class_names = np.array(dataset.categories + [REST_LABEL])
    data = PreparedData(
        X=normalizer.to_grid(signals), X_raw=normalizer.raw_to_grid(bolds), mask=normalizer.mask_[normalizer.bbox_],
        labels=labels, label_ids=np.array([list(class_names).index(lab) for lab in labels]), class_names=class_names,
        runs=run_of_volume, index_in_run=np.concatenate(index_in_run), is_test=np.isin(run_of_volume, split.test_runs),
        affine=normalizer.bbox_affine_, source_affine=mask_img.affine, source_shape=np.array(mask_img.shape[:3]),
        bbox_start=np.array([s.start for s in normalizer.bbox_]), tr=dataset.tr, mask_name=mask,
        hemodynamic_shift_volumes=hemodynamic_shift_volumes)
    return Preprocessed(data, split, normalizer, signals, mask_img, bolds)
