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

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from . import HAXBY_CATEGORIES, REST_LABEL
from .atomic import atomic_directory
from .errors import ModalMergeInputError
from .nifti_checks import check_same_grid, load_nifti

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


# --------------------------------------------------------------------------- caching and download
def default_cache_dir() -> Path:
    """Download cache: ``$MODALMERGE_CACHE`` or ``~/.cache/modalmerge`` (survives ``rm -r results``)."""
    return Path(os.environ.get("MODALMERGE_CACHE", Path.home() / ".cache" / "modalmerge"))


def configured_index_url() -> str | None:
    """The package index the user's pip uses (``PIP_INDEX_URL`` or ``pip config``), if any."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True, text=True, timeout=60, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    url = result.stdout.strip()
    return url if result.returncode == 0 and url else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_sdist(project: str, filename: str, sha256: str, cache_dir: Path, index_url: str | None = None) -> Path:
    """Return the cached source archive ``filename`` of ``project``, downloading it once.

    The archive is verified against ``sha256`` after download and on every cache hit; a file
    that does not match is removed and reported, never used.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / filename
    if target.exists():
        found = sha256_of(target)
        if found == sha256:
            return target
        target.unlink()
        raise ModalMergeInputError(
            f"Checksum mismatch for cached archive {target}: expected sha256 {sha256}, got {found}. "
            "The corrupt file was removed; run the workflow again to download it afresh."
        )
    import pypi_simple  # imported here so offline users of other sources never need it

    cache_dir.mkdir(parents=True, exist_ok=True)
    endpoint = index_url or configured_index_url() or pypi_simple.PYPI_SIMPLE_ENDPOINT
    partial = target.with_name(target.name + ".part")
    try:
        with pypi_simple.PyPISimple(endpoint=endpoint) as client:
            page = client.get_project_page(project)
            matches = [pkg for pkg in page.packages if pkg.filename == filename]
            if not matches:
                raise ModalMergeInputError(
                    f"The package index {endpoint} lists no file {filename} for project {project}. "
                    "Check your pip index configuration (pip config get global.index-url)."
                )
            client.download_package(matches[0], partial)
    except ModalMergeInputError:
        raise
    except Exception as err:  # network errors differ by client version; report them in one voice
        partial.unlink(missing_ok=True)
        raise ModalMergeInputError(
            f"Could not download {filename} from the package index {endpoint}: {type(err).__name__}: {err}. "
            f"Check your network and pip index, or place the file at {target} yourself."
        ) from err
    found = sha256_of(partial)
    if found != sha256:
        partial.unlink(missing_ok=True)
        raise ModalMergeInputError(
            f"Checksum mismatch for downloaded {filename} from {endpoint}: expected sha256 {sha256}, got {found}. "
            "The download was discarded; the index may serve a different file than the one this workflow pins."
        )
    os.replace(partial, target)
    return target


def safe_extract(archive: Path, member_prefix: str, dest: Path) -> Path:
    """Extract only the members under ``member_prefix`` into ``dest``; refuse unsafe members.

    A member whose path is absolute, contains ``..``, or is a link or device is refused
    before anything is written (path traversal and link attacks).
    """
    dest = Path(dest).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(member_prefix)]
        if not members:
            raise ModalMergeInputError(f"Archive {archive} holds no member under {member_prefix}.")
        for member in members:
            relative = member.name[len(member_prefix):]
            target = (dest / relative).resolve()
            unsafe = (
                os.path.isabs(member.name)
                or ".." in Path(member.name).parts
                or not (target == dest or dest in target.parents)
                or not (member.isfile() or member.isdir())
            )
            if unsafe:
                raise ModalMergeInputError(
                    f"Refusing unsafe archive member {member.name!r} in {archive}: it is a link, a device "
                    "or a path that would escape the extraction folder."
                )
        for member in members:
            relative = member.name[len(member_prefix):]
            if not relative:
                continue
            target = dest / relative
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
    return dest


# --------------------------------------------------------------------------- the normalised layout
@dataclass
class RunData:
    """One run: its 4D BOLD image and its events table (onset, duration, trial_type in seconds)."""

    run: int
    bold: nib.Nifti1Image
    events: pd.DataFrame
    bold_source: str


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
        run.events = validate_events(run.events, run.bold.shape[3], tr, categories, f"of run {run.run} ({run.bold_source})")
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
    if not (extracted / "models/model001/condition_key.txt").exists():
        with atomic_directory(extracted) as tmp:
            safe_extract(archive, spec["member_prefix"], tmp)
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
    run_data = []
    for run in runs:
        bold_path = Path(bold.format(subject=subject, run=run))
        events_path = Path(events.format(subject=subject, run=run))
        if not events_path.exists():
            raise ModalMergeInputError(f"Events file not found: {events_path} (from data.custom.events).")
        run_data.append(RunData(run, load_nifti(bold_path, ndim=4, what="BOLD"),
                                pd.read_csv(events_path, sep="\t"), str(bold_path)))
    mask_path = Path(mask.format(subject=subject))
    masks = {"custom": load_nifti(mask_path, ndim=3, what="mask"),
             "nonzero": nonzero_mask([r.bold for r in run_data])}
    provenance = {"bold": bold, "events": events, "mask": mask}
    return write_normalized_dataset(Path(dest), subject, "custom", float(tr), run_data, masks, categories, provenance)


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
