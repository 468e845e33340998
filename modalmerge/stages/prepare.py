"""Stage runner of mask_and_normalize: preprocess one subject and write its outputs atomically."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..atomic import atomic_file
from ..data.layout import Dataset
from ..data.preprocessing import preprocess


def prepare_subject(dataset_dir: str | Path, out: dict, mask: str = "auto", detrend: bool = True,
                    standardize="zscore_sample", hemodynamic_shift_volumes: int = 0,
                    test_runs: list[int] | None = None, n_folds: int | None = None,
                    drop_constant_voxels: bool = False, exclude_runs: list[int] | None = None) -> dict:
    """Run mask-and-normalize for one subject and write every output path in ``out``.

    ``out`` keys: ``bold`` (normalised 4D NIfTI), ``mask`` (NIfTI), ``mean`` (mean EPI NIfTI),
    ``volumes`` (NPZ), ``table`` (TSV, one row per volume), ``split`` (JSON).
    Returns a small summary (volumes per category and run).
    """
    dataset = Dataset.read(dataset_dir)
    prepared = preprocess(dataset, mask, detrend, standardize, hemodynamic_shift_volumes, test_runs, n_folds,
                          drop_constant_voxels, exclude_runs)
    data, split, normalizer, mask_img = prepared.data, prepared.split, prepared.normalizer, prepared.mask_img
    with atomic_file(out["bold"]) as tmp:
        # Rebuilt as float32: the masker copies the mask's uint8 header, which would quantise z-scores.
        normalized = normalizer.masker_.inverse_transform(prepared.signals)
        nib.save(nib.Nifti1Image(np.asarray(normalized.dataobj, dtype=np.float32), mask_img.affine), tmp)
    with atomic_file(out["mask"]) as tmp:
        nib.save(nib.Nifti1Image(normalizer.mask_.astype(np.uint8), mask_img.affine), tmp)
    with atomic_file(out["mean"]) as tmp:
        mean = np.mean([np.asarray(b.dataobj, dtype=np.float32).mean(axis=3) for b in prepared.bolds], axis=0)
        nib.save(nib.Nifti1Image(mean, mask_img.affine), tmp)
    with atomic_file(out["volumes"]) as tmp:
        data.save(tmp)
    table = pd.DataFrame({
        "volume": np.arange(len(data.labels)), "run": data.runs, "index_in_run": data.index_in_run,
        "time_s": data.index_in_run * data.tr, "label": data.labels,
        "split": np.where(data.is_test, "test", "train"),
    })
    with atomic_file(out["table"]) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    n_voxels = int(normalizer.mask_.sum())
    with atomic_file(out["split"]) as tmp:
        tmp.write_text(json.dumps({**split.to_dict(), "subject": dataset.manifest["subject"],
                                   "mask": data.mask_name, "n_voxels": n_voxels}, indent=2))
    return {"volumes_per_label": table["label"].value_counts().to_dict(), "n_voxels": n_voxels,
            "grid": list(data.X.shape[1:])}
