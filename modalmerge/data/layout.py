"""The normalised on-disk layout every data source writes (``dataset.json``, ``func/``, ``masks/``)
and its reader :class:`Dataset`."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import REST_LABEL
from ..atomic import atomic_directory
from ..errors import ModalMergeInputError
from .nifti import check_same_grid


# --------------------------------------------------------------------------- the normalised layout
@dataclass
class RunData:
    """One run: its 4D BOLD image and its events table (onset, duration, trial_type in seconds)."""

    run: int
    bold: nib.Nifti1Image
    events: pd.DataFrame
    bold_source: str
    events_source: str = ""  # the events file, named in messages about events

    @property
    def events_where(self) -> str:
        return f"{self.events_source} (run {self.run})" if self.events_source else f"of run {self.run} ({self.bold_source})"


def read_events(path: str | Path) -> pd.DataFrame:
    """Read a BIDS events TSV; onsets and durations must be numbers (``n/a`` is refused, not dropped)."""
    path = Path(path)
    if not path.exists():
        raise ModalMergeInputError(f"Events file not found: {path} (from data.custom.events).")
    try:
        events = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ModalMergeInputError(f"Cannot read events file {path}: {err}. Expected a tab-separated table with "
                                   "columns onset, duration, trial_type.") from err
    for column in ("onset", "duration"):
        if column not in events:
            continue
        numbers = pd.to_numeric(events[column], errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.fillna(0))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ModalMergeInputError(
                f"Events file {path}: {int(bad.sum())} {column} value(s) are not numbers in seconds; first at data "
                f"row {row + 1}: {events[column].iloc[row]!r}. Every event needs a numeric onset and duration "
                "(BIDS 'n/a' is not allowed here: remove the row or give the value).")
        events[column] = numbers.astype(float)
    return events


def validate_events(events: pd.DataFrame, n_volumes: int, tr: float, categories: list[str], where: str) -> pd.DataFrame:
    """Check an events table against its run; return it sorted, with only the BIDS columns."""
    missing = {"onset", "duration", "trial_type"} - set(events.columns)
    if missing:
        raise ModalMergeInputError(
            f"Events table {where} lacks column(s) {sorted(missing)}. Expected BIDS-style columns "
            "onset, duration, trial_type (seconds, tab-separated)."
        )
    events = events[["onset", "duration", "trial_type"]].copy()
    events["trial_type"] = events["trial_type"].astype(str)
    negative = events[events["duration"] < 0]
    if len(negative):
        raise ModalMergeInputError(
            f"Events table {where} has {len(negative)} event(s) with a negative duration (first: onset "
            f"{negative.iloc[0].onset:g} s, duration {negative.iloc[0].duration:g} s). Durations are in seconds "
            "and must be >= 0: fix the events file.")
    if events.empty:
        warnings.warn(f"Events table {where} has no events: every volume of this run is labelled rest. "
                      "If the run had stimuli, its events file is incomplete.", UserWarning, stacklevel=2)
    unknown = sorted(set(events["trial_type"]) - set(categories) - {REST_LABEL})
    if unknown:
        raise ModalMergeInputError(
            f"Events table {where} has unknown categories {unknown}. Known: {list(categories)}. "
            "Add them to data.categories in config.yaml or fix the events file."
        )
    run_length = n_volumes * tr
    outside = events[(events["onset"] < 0) | (events["onset"] + events["duration"] > run_length + 1e-6)]
    if len(outside):
        first = outside.iloc[0]
        raise ModalMergeInputError(
            f"Events table {where} has {len(outside)} event(s) outside the run (0 to {run_length:g} s for "
            f"{n_volumes} volumes at TR {tr:g} s); first: onset {first.onset:g} s, duration {first.duration:g} s. "
            "Check the TR (data.custom.tr) and that the events belong to this run."
        )
    return events.sort_values("onset").reset_index(drop=True)


def write_normalized_dataset(
    dest: Path,
    subject: str,
    source: str,
    tr: float,
    runs: list[RunData],
    masks: dict[str, nib.Nifti1Image],
    categories: list[str],
    provenance: dict,
) -> Path:
    """Validate everything, then write the normalised layout to ``dest`` all-or-nothing."""
    if not runs:
        raise ModalMergeInputError(f"No runs found for subject {subject} (source {source}).")
    reference = runs[0].bold
    for run in runs:
        if run.bold.ndim != 4:
            raise ModalMergeInputError(f"BOLD {run.bold_source} must be 4D. Got shape {run.bold.shape}.")
        check_same_grid(run.bold, reference, f"BOLD {run.bold_source}", f"BOLD {runs[0].bold_source}")
        run.events = validate_events(run.events, run.bold.shape[3], tr, categories, run.events_where)
    for name, mask in masks.items():
        check_same_grid(mask, reference, f"mask '{name}'", f"BOLD {runs[0].bold_source}")
    with atomic_directory(dest) as tmp:
        (tmp / "func").mkdir()
        (tmp / "masks").mkdir()
        files = {}
        for run in runs:
            bold_name = f"func/run-{run.run:02d}_bold.nii.gz"
            events_name = f"func/run-{run.run:02d}_events.tsv"
            nib.save(run.bold, tmp / bold_name)
            run.events.to_csv(tmp / events_name, sep="\t", index=False)
            files[str(run.run)] = {"bold": bold_name, "events": events_name, "n_volumes": int(run.bold.shape[3])}
        mask_files = {}
        for name, mask in masks.items():
            data = (np.asarray(mask.dataobj) > 0).astype(np.uint8)
            nib.save(nib.Nifti1Image(data, mask.affine), tmp / f"masks/{name}.nii.gz")
            mask_files[name] = f"masks/{name}.nii.gz"
        manifest = {
            "subject": subject,
            "source": source,
            "tr": tr,
            "categories": list(categories),
            "runs": files,
            "masks": mask_files,
            "grid_shape": list(reference.shape[:3]),
            "provenance": provenance,
        }
        (tmp / "dataset.json").write_text(json.dumps(manifest, indent=2))
    return dest


@dataclass
class Dataset:
    """A dataset in the normalised layout, read back from disk."""

    root: Path
    manifest: dict

    @classmethod
    def read(cls, root: str | Path) -> "Dataset":
        root = Path(root)
        manifest_path = root / "dataset.json"
        if not manifest_path.exists():
            raise ModalMergeInputError(f"{manifest_path} not found: run the fetch_haxby stage first.")
        return cls(root, json.loads(manifest_path.read_text()))

    @property
    def tr(self) -> float:
        return float(self.manifest["tr"])

    @property
    def runs(self) -> list[int]:
        return sorted(int(r) for r in self.manifest["runs"])

    @property
    def categories(self) -> list[str]:
        return list(self.manifest["categories"])

    def bold_path(self, run: int) -> Path:
        return self.root / self.manifest["runs"][str(run)]["bold"]

    def events(self, run: int) -> pd.DataFrame:
        return pd.read_csv(self.root / self.manifest["runs"][str(run)]["events"], sep="\t")

    def mask_path(self, name: str) -> Path:
        if name not in self.manifest["masks"]:
            raise ModalMergeInputError(
                f"Mask '{name}' is not available for subject {self.manifest['subject']} "
                f"(source {self.manifest['source']}). Available: {sorted(self.manifest['masks'])}. "
                "Set prep.mask in config.yaml to one of them."
            )
        return self.root / self.manifest["masks"][name]


def nonzero_mask(bolds: list[nib.Nifti1Image]) -> nib.Nifti1Image:
    """Voxels that are non-zero in every volume of every run (the slice data's implicit mask)."""
    keep = np.ones(bolds[0].shape[:3], dtype=bool)
    for bold in bolds:
        keep &= np.all(np.asarray(bold.dataobj) != 0, axis=3)
    return nib.Nifti1Image(keep.astype(np.uint8), bolds[0].affine)
