"""Shared fixtures: the real embedded Haxby data (downloaded once into the user cache) and tiny fakes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from modalmerge.data.sources import fetch_dataset
from modalmerge.stages.prepare import prepare_subject

REPO = Path(__file__).resolve().parents[1]


def prep_outputs(folder: Path) -> dict:
    names = {"bold": "bold.nii.gz", "mask": "mask.nii.gz", "mean": "mean.nii.gz",
             "volumes": "volumes.npz", "table": "volumes.tsv", "split": "split.json"}
    return {key: str(folder / name) for key, name in names.items()}


@pytest.fixture(scope="session")
def embedded_dataset(tmp_path_factory) -> Path:
    """The real embedded data (1slice), in the normalised layout."""
    dest = tmp_path_factory.mktemp("data") / "sub001"
    fetch_dataset({"source": "embedded", "embedded": {"resolution": "1slice"}}, "sub001", dest)
    return dest


@pytest.fixture(scope="session")
def embedded_dataset_25mm(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("data25") / "sub001"
    fetch_dataset({"source": "embedded", "embedded": {"resolution": "25mm"}}, "sub001", dest)
    return dest


@pytest.fixture(scope="session")
def prepared_slice(tmp_path_factory, embedded_dataset) -> dict:
    """mask-and-normalize outputs of the real slice data (test runs 10-12)."""
    out = prep_outputs(tmp_path_factory.mktemp("prep"))
    prepare_subject(embedded_dataset, out, test_runs=[10, 11, 12])
    return out


def write_tiny_run(folder: Path, run: int, shape=(4, 5, 3), n_volumes=20, seed=0, affine=None) -> tuple[Path, Path]:
    """A small random 4D BOLD run and an events table with two categories."""
    rng = np.random.default_rng(seed + run)
    data = 100 + rng.normal(size=shape + (n_volumes,)).astype(np.float32)
    bold = folder / f"run-{run}_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine), bold)
    events = folder / f"run-{run}_events.tsv"
    pd.DataFrame({"onset": [2.0, 20.0], "duration": [10.0, 10.0], "trial_type": ["face", "house"]}).to_csv(
        events, sep="\t", index=False)
    return bold, events


@pytest.fixture
def tiny_custom_study(tmp_path) -> dict:
    """A two-category custom study on a 4x5x3 grid: 3 runs of 20 volumes, TR 2 s."""
    folder = tmp_path / "study"
    folder.mkdir()
    for run in (1, 2, 3):
        write_tiny_run(folder, run)
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0])), folder / "mask.nii.gz")
    return {
        "source": "custom",
        "categories": ["face", "house"],
        "custom": {"bold": str(folder / "run-{run}_bold.nii.gz"), "events": str(folder / "run-{run}_events.tsv"),
                   "mask": str(folder / "mask.nii.gz"), "runs": [1, 2, 3], "tr": 2.0},
    }


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def workflow_dir(tmp_path_factory) -> Path:
    """One tiny end-to-end run of the whole workflow (shared by the slow tests)."""
    import yaml
    from test_workflow import run_snakemake, tiny_config
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    run_snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    return workdir
