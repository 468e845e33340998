"""The prepared-data contract: ``volumes.npz`` (one key list for save and load), the rest label and
the run split (``split.json``). Every stage after mask-and-normalize reads its data through here."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import REST_LABEL
from ..errors import ModalMergeInputError


@dataclass
class PreparedData:
    """The NPZ written by mask-and-normalize: volumes ``X`` ``(n_volumes, x, y, z)`` on the mask's
    bounding box, their labels, runs and split, and what maps them back to the source space.

    The dataclass fields are the NPZ keys (one list for :meth:`save` and :meth:`load`); the last
    entry of ``class_names`` is always :data:`modalmerge.REST_LABEL`.
    """

    X: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    label_ids: np.ndarray
    class_names: np.ndarray
    runs: np.ndarray
    index_in_run: np.ndarray
    is_test: np.ndarray
    affine: np.ndarray
    source_affine: np.ndarray
    source_shape: np.ndarray
    bbox_start: np.ndarray
    tr: float
    mask_name: str = ""
    hemodynamic_shift_volumes: int = 0
    X_raw: np.ndarray | None = None  # raw intensities on the same grid; loaded only on request

    def __post_init__(self):
        if len(self.class_names) == 0 or str(self.class_names[-1]) != REST_LABEL:
            raise ModalMergeInputError(
                f"class_names must end with {REST_LABEL!r}; got {list(self.class_names)}. "
                "Rerun mask_and_normalize to rebuild volumes.npz.")

    @classmethod
    def load(cls, path: str | Path, with_raw: bool = False) -> "PreparedData":
        scalars = {"tr": float, "mask_name": str, "hemodynamic_shift_volumes": int}
        with np.load(path, allow_pickle=False) as npz:
            values = {}
            for f in fields(cls):
                if f.name == "X_raw" and not with_raw:
                    continue
                if f.name not in npz.files:
                    if f.default is not MISSING:
                        continue  # optional key, absent from older files
                    raise ModalMergeInputError(f"{path} lacks the key {f.name!r}: rerun mask_and_normalize.")
                value = npz[f.name]
                values[f.name] = scalars[f.name](value) if f.name in scalars else value
        return cls(**values)

    def save(self, path: str | Path) -> None:
        """Write every field (``X_raw`` when present) as one compressed NPZ to ``path``."""
        np.savez_compressed(path, **{f.name: getattr(self, f.name) for f in fields(self)
                                     if getattr(self, f.name) is not None})

    @property
    def rest_id(self) -> int:
        """The label id of rest (the last class)."""
        return len(self.class_names) - 1

    @property
    def categories(self) -> list[int]:
        """The label ids of the stimulus categories (every class but rest)."""
        return list(range(self.rest_id))

    @property
    def category_names(self) -> list[str]:
        return [str(name) for name in self.class_names[:self.rest_id]]

    @property
    def train_runs(self) -> list[int]:
        return sorted(set(self.runs[~self.is_test].tolist()))

    @property
    def test_runs(self) -> list[int]:
        return sorted(set(self.runs[self.is_test].tolist()))

    def to_source_space(self, volumes: np.ndarray) -> nib.Nifti1Image:
        """Bounding-box volumes ``(n, x, y, z)`` -> 4D NIfTI on the source grid with the source affine."""
        full = np.zeros(tuple(self.source_shape) + (volumes.shape[0],), dtype=np.float32)
        box = tuple(slice(int(s), int(s) + n) for s, n in zip(self.bbox_start, volumes.shape[1:]))
        full[box] = np.moveaxis(volumes * self.mask, 0, -1)
        return nib.Nifti1Image(full, self.source_affine)


@dataclass
class RunSplit:
    """Which runs train the model and which are held out; optional k folds over all runs; runs left
    out of the whole analysis on purpose (``excluded_runs``, e.g. the test runs while a development
    split chooses settings)."""

    train_runs: list[int]
    test_runs: list[int]
    folds: list[dict] = field(default_factory=list)
    excluded_runs: list[int] = field(default_factory=list)

    @classmethod
    def from_config(cls, runs: list[int], test_runs: list[int], n_folds: int | None = None,
                    excluded_runs: list[int] | None = None) -> "RunSplit":
        excluded = sorted(int(r) for r in (excluded_runs or []))
        unknown = sorted(set(excluded) - set(runs))
        if unknown:
            raise ModalMergeInputError(f"prep.split.exclude_runs lists runs {unknown} that the data does not have (runs: {runs}).")
        if set(excluded) & set(test_runs):
            raise ModalMergeInputError(
                f"prep.split.exclude_runs {excluded} and prep.split.test_runs {sorted(test_runs)} share runs "
                f"{sorted(set(excluded) & set(test_runs))}: a run is either held out or left out, not both.")
        runs = [r for r in runs if r not in excluded]
        unknown = sorted(set(test_runs) - set(runs))
        if unknown:
            raise ModalMergeInputError(f"prep.split.test_runs lists runs {unknown} that the data does not have (runs: {runs}).")
        train = [r for r in runs if r not in test_runs]
        if not train or not test_runs:
            raise ModalMergeInputError(
                f"prep.split.test_runs {test_runs} leaves {len(train)} training and {len(test_runs)} held-out runs; both must be non-empty."
            )
        folds = []
        if n_folds:
            if not 2 <= n_folds <= len(runs):
                raise ModalMergeInputError(f"prep.split.n_folds must be between 2 and {len(runs)} (the number of runs); got {n_folds}.")
            for k, held in enumerate(np.array_split(np.array(runs), n_folds)):
                folds.append({"fold": k, "test_runs": held.tolist(), "train_runs": [r for r in runs if r not in held]})
        return cls(train, sorted(test_runs), folds, excluded)

    def to_dict(self) -> dict:
        return {"train_runs": self.train_runs, "test_runs": self.test_runs, "folds": self.folds,
                "excluded_runs": self.excluded_runs}

    @classmethod
    def read(cls, path: str | Path) -> "RunSplit":
        """Read ``split.json``; refuse a split in which a run is both training and held out."""
        data = json.loads(Path(path).read_text())
        split = cls(data["train_runs"], data["test_runs"], data.get("folds", []), data.get("excluded_runs", []))
        both = sorted(set(split.test_runs) & set(split.train_runs))
        if both:
            raise ModalMergeInputError(f"{path}: runs {both} are both train and test; rerun mask_and_normalize.")
        return split
