"""Data sources: bring Haxby 2001 (or the user's own study) into one normalised on-disk layout.

Three sources end in the same layout, so later stages never care where data came from::

    {dest}/dataset.json               subject, source, TR, runs, categories, provenance
    {dest}/func/run-01_bold.nii.gz    4D BOLD of one run (source affine and header kept)
    {dest}/func/run-01_events.tsv     BIDS-style events: onset, duration, trial_type
    {dest}/masks/{name}.nii.gz        masks on the BOLD grid (brain, vt, ..., nonzero)

* ``embedded``: subject 1 of Haxby et al. (2001) as shipped in the PyPI source distribution of
  PyMVPA 2.6.5 (``mvpa2/data/haxby2001``), downloaded by package name from the package index the
  user's pip is configured with, checked against a pinned sha256 and extracted safely.
* ``nilearn``: full-resolution, 6-subject Haxby through :func:`nilearn.datasets.fetch_haxby`.
* ``custom``: a 4D NIfTI and an events table per run plus a mask, named by path patterns.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from .. import HAXBY_CATEGORIES, REST_LABEL
from ..errors import ModalMergeInputError
from .download import default_cache_dir, download_sdist, ensure_extracted
from .layout import RunData, nonzero_mask, read_events, write_normalized_dataset
from .nifti import check_bold_values, check_same_grid, header_tr, load_nifti

EMBEDDED_ARCHIVE = {
    "project": "pymvpa2",
    "version": "2.6.5",
    "filename": "pymvpa2-2.6.5.tar.gz",
    "sha256": "f98b18e15d012aaa68c0ef6ccf420662df05657673843ab368e7f0adfdda0758",
    "member_prefix": "pymvpa2-2.6.5/mvpa2/data/haxby2001/",
}
EMBEDDED_RESOLUTIONS = {"1slice": "bold_1slice.nii.gz", "25mm": "bold_25mm.nii.gz"}
EMBEDDED_MASKS_25MM = ("brain", "gray", "white", "vt", "hoc")
HAXBY_TR = 2.5
HAXBY_N_RUNS = 12


# --------------------------------------------------------------------------- source: embedded
def read_fsl_onsets(run_dir: Path, condition_key: dict[str, str]) -> pd.DataFrame:
    """Read OpenfMRI 3-column onset files (onset, duration, weight) of one run into BIDS events."""
    rows = []
    for cond_file in sorted(run_dir.glob("cond*.txt")):
        trial_type = condition_key.get(cond_file.stem)
        if trial_type is None:
            raise ModalMergeInputError(f"{cond_file} is not listed in the condition key {sorted(condition_key)}.")
        table = np.atleast_2d(np.loadtxt(cond_file))
        for onset, duration, _weight in table:
            rows.append({"onset": float(onset), "duration": float(duration), "trial_type": trial_type})
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def read_condition_key(path: Path) -> dict[str, str]:
    """``task001 cond001 house`` lines -> ``{"cond001": "house"}``."""
    key = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3:
            key[parts[1]] = parts[2]
    return key


def prepare_embedded(dest: Path, subject: str, resolution: str, categories: list[str],
                     cache_dir: Path | None = None, index_url: str | None = None) -> Path:
    """Haxby 2001 subject 1 from the PyMVPA 2.6.5 source archive -> normalised layout at ``dest``."""
    if subject != "sub001":
        raise ModalMergeInputError(
            f"The embedded Haxby data holds subject 'sub001' only; got subject '{subject}'. "
            "Use data.source: nilearn for subjects sub001-sub006."
        )
    if resolution not in EMBEDDED_RESOLUTIONS:
        raise ModalMergeInputError(f"data.embedded.resolution must be one of {sorted(EMBEDDED_RESOLUTIONS)}; got {resolution!r}.")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    spec = EMBEDDED_ARCHIVE
    archive = download_sdist(spec["project"], spec["filename"], spec["sha256"], cache_dir, index_url)
    extracted = cache_dir / f"{spec['project']}-{spec['version']}-haxby2001"
    ensure_extracted(archive, spec["member_prefix"], extracted)
    condition_key = read_condition_key(extracted / "models/model001/condition_key.txt")
    runs = []
    for run in range(1, HAXBY_N_RUNS + 1):
        bold_path = extracted / f"sub001/BOLD/task001_run{run:03d}/{EMBEDDED_RESOLUTIONS[resolution]}"
        bold = load_nifti(bold_path, ndim=4, what="BOLD")
        events = read_fsl_onsets(extracted / f"sub001/model/model001/onsets/task001_run{run:03d}", condition_key)
        runs.append(RunData(run, bold, events, str(bold_path)))
    masks = {"nonzero": nonzero_mask([r.bold for r in runs])}
    if resolution == "25mm":
        for name in EMBEDDED_MASKS_25MM:
            masks[name] = load_nifti(extracted / f"sub001/masks/25mm/{name}.nii.gz", ndim=3, what=f"mask '{name}'")
    provenance = {
        "archive": spec["filename"],
        "sha256": spec["sha256"],
        "resolution": resolution,
        "citation": "Haxby et al. (2001) Science 293:2425-2430; data as distributed with PyMVPA 2.6.5",
    }
    return write_normalized_dataset(Path(dest), subject, "embedded", HAXBY_TR, runs, masks, categories, provenance)


# --------------------------------------------------------------------------- source: nilearn
def labels_to_events(labels: list[str], tr: float) -> pd.DataFrame:
    """Per-volume labels -> BIDS events (one event per block of consecutive identical non-rest labels)."""
    rows = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start] != REST_LABEL:
                rows.append({"onset": start * tr, "duration": (i - start) * tr, "trial_type": labels[start]})
            start = i
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"])


def subject_number(subject: str) -> int:
    digits = "".join(ch for ch in subject if ch.isdigit())
    if not digits:
        raise ModalMergeInputError(f"Cannot read a subject number from '{subject}'; use names like sub001 ... sub006.")
    return int(digits)


def prepare_nilearn(dest: Path, subject: str, categories: list[str], data_dir: str | None = None) -> Path:
    """Full-resolution Haxby through :func:`nilearn.datasets.fetch_haxby` -> normalised layout.

    nilearn downloads only files missing from ``data_dir``; a directory laid out as nilearn
    expects is used as is, which is how this path is tested offline.
    """
    from nilearn.datasets import fetch_haxby
    from nilearn.masking import compute_epi_mask

    number = subject_number(subject)
    if not 1 <= number <= 6:
        raise ModalMergeInputError(f"nilearn's Haxby dataset has subjects 1-6; got '{subject}'.")
    try:
        bunch = fetch_haxby(data_dir=data_dir, subjects=[number], verbose=0)
    except Exception as err:
        raise ModalMergeInputError(
            f"nilearn.datasets.fetch_haxby failed for subject {number} (data_dir={data_dir}): {err}. "
            "It needs internet access the first time; or point data.nilearn.data_dir at a copy."
        ) from err
    bold_all = load_nifti(bunch.func[0], ndim=4, what="BOLD")
    table = pd.read_csv(bunch.session_target[0], sep=" ")
    if len(table) != bold_all.shape[3]:
        raise ModalMergeInputError(
            f"{bunch.session_target[0]} has {len(table)} rows but {bunch.func[0]} has {bold_all.shape[3]} volumes."
        )
    data = np.asarray(bold_all.dataobj)
    runs = []
    for chunk in sorted(table["chunks"].unique()):
        index = np.flatnonzero(table["chunks"].to_numpy() == chunk)
        labels = table["labels"].astype(str).to_numpy()[index].tolist()
        events = labels_to_events(labels, HAXBY_TR)
        if events.empty:  # subject 5 run 8 has no task labels (nilearn's docs)
            continue
        bold = nib.Nifti1Image(data[..., index], bold_all.affine, bold_all.header)
        runs.append(RunData(int(chunk) + 1, bold, events, f"{bunch.func[0]} (chunk {chunk})"))
    masks = {
        "vt": load_nifti(bunch.mask_vt[0], ndim=3, what="mask 'vt'"),
        "face": load_nifti(bunch.mask_face[0], ndim=3, what="mask 'face'"),
        "house": load_nifti(bunch.mask_house[0], ndim=3, what="mask 'house'"),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty EPI mask is handled just below
        brain = compute_epi_mask(nib.Nifti1Image(data.mean(axis=3), bold_all.affine))
    if np.asarray(brain.dataobj).any():
        masks["brain"] = brain
    masks["nonzero"] = nonzero_mask([r.bold for r in runs])
    provenance = {"fetcher": "nilearn.datasets.fetch_haxby", "files": [str(bunch.func[0])],
                  "citation": "Haxby et al. (2001) Science 293:2425-2430"}
    return write_normalized_dataset(Path(dest), subject, "nilearn", HAXBY_TR, runs, masks, categories, provenance)


# --------------------------------------------------------------------------- source: custom
def prepare_custom(dest: Path, subject: str, categories: list[str], bold: str, events: str,
                   mask: str, runs: list[int], tr: float) -> Path:
    """The user's own study: path patterns with ``{subject}`` and ``{run}`` -> normalised layout."""
    duplicates = sorted({r for r in runs if runs.count(r) > 1})
    if duplicates:
        raise ModalMergeInputError(f"data.custom.runs lists run(s) {duplicates} more than once ({runs}); list each run once.")
    run_data = []
    for run in runs:
        bold_path = custom_path(bold, subject, run, "data.custom.bold")
        events_path = custom_path(events, subject, run, "data.custom.events")
        image = load_nifti(bold_path, ndim=4, what="BOLD")
        check_bold_values(image, bold_path)
        run_data.append(RunData(run, image, read_events(events_path), str(bold_path), str(events_path)))
    check_tr(float(tr), run_data)
    mask_path = Path(mask.format(subject=subject))
    masks = {"custom": load_nifti(mask_path, ndim=3, what="mask")}
    for run in run_data[1:]:  # before the nonzero mask, which needs one grid
        check_same_grid(run.bold, run_data[0].bold, f"BOLD {run.bold_source}", f"BOLD {run_data[0].bold_source}")
    masks["nonzero"] = nonzero_mask([r.bold for r in run_data])
    provenance = {"bold": bold, "events": events, "mask": mask}
    return write_normalized_dataset(Path(dest), subject, "custom", float(tr), run_data, masks, categories, provenance)


def custom_path(pattern: str, subject: str, run: int, key: str) -> Path:
    """``pattern`` filled for one run; a missing file whose zero-padded name exists gets that hint."""
    path = Path(pattern.format(subject=subject, run=run))
    if not path.exists():
        hint = ""
        if "{run}" in pattern:
            padded = pattern.replace("{run}", "{run:02d}")
            if Path(padded.format(subject=subject, run=run)).exists():
                hint = f" A zero-padded name exists: write the pattern as {padded!r}."
        raise ModalMergeInputError(f"File not found: {path} (run {run}, from {key}: {pattern!r}).{hint}")
    return path


def check_tr(tr: float, runs: list[RunData]) -> None:
    """The configured TR must agree with every header that records one, and the headers with each other."""
    recorded = [(run, header_tr(run.bold)) for run in runs]
    recorded = [(run, value) for run, value in recorded if value is not None]
    for run, value in recorded:
        if abs(value - tr) > 0.01 * tr:
            raise ModalMergeInputError(
                f"data.custom.tr is {tr:g} s but the header of {run.bold_source} says {value:g} s: volumes would be "
                f"labelled at the wrong times. Set data.custom.tr: {value:g} (or fix the header if it is wrong).")
    if len({round(value, 4) for _, value in recorded}) > 1:
        listing = ", ".join(f"{run.bold_source}: {value:g} s" for run, value in recorded)
        raise ModalMergeInputError(f"The runs' headers disagree on the TR ({listing}); every run must share one TR.")


def fetch_dataset(data_config: dict, subject: str, dest: str | Path) -> Path:
    """Dispatch on ``data.source`` of the configuration and write the normalised layout."""
    source = data_config["source"]
    categories = list(data_config.get("categories", HAXBY_CATEGORIES))
    cache_dir = data_config.get("cache_dir")
    if source == "embedded":
        embedded = data_config.get("embedded", {})
        return prepare_embedded(Path(dest), subject, embedded.get("resolution", "1slice"), categories,
                                cache_dir=cache_dir, index_url=embedded.get("index_url"))
    if source == "nilearn":
        return prepare_nilearn(Path(dest), subject, categories, data_config.get("nilearn", {}).get("data_dir"))
    if source == "custom":
        custom = data_config.get("custom") or {}
        needed = ["bold", "events", "mask", "runs", "tr"]
        absent = [key for key in needed if custom.get(key) in (None, "", [])]
        if absent:
            raise ModalMergeInputError(f"data.source is 'custom' but data.custom lacks {absent}. See config.yaml for an example.")
        return prepare_custom(Path(dest), subject, categories, custom["bold"], custom["events"],
                              custom["mask"], list(custom["runs"]), custom["tr"])
    raise ModalMergeInputError(f"data.source must be one of embedded, nilearn, custom; got {source!r}.")
