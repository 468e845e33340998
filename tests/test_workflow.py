"""End-to-end: the real Snakemake workflow in a temporary directory on the real embedded data."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def tiny_config() -> dict:
    """The default configuration, shrunk so the whole chain runs in a few minutes on 2 cores."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    return config


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True, text=True, timeout=1800,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def planned_rules(workdir: Path) -> set[str]:
    """Rules that ``snakemake -n`` would run (from its job-stats table)."""
    out = run_snakemake(workdir, "-n", "--quiet", "rules").stdout
    rules = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            rules.add(parts[0])
    return rules


@pytest.fixture(scope="module")
def workflow_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    run_snakemake(workdir, "--cores", "2", "--resources", "gpu=1")
    return workdir


def test_workflow_writes_the_prepared_data(workflow_dir):
    import numpy as np
    prep = workflow_dir / "results/prep/sub001"
    for name in ("sub001_desc-normalized_bold.nii.gz", "sub001_desc-brain_mask.nii.gz", "volumes.npz",
                 "volumes.tsv", "split.json"):
        assert (prep / name).exists(), name
    with np.load(prep / "volumes.npz") as npz:
        assert npz["X"].shape[0] == 12 * 121
    for rule in ("fetch_haxby", "mask_and_normalize"):
        assert (workflow_dir / f"results/logs/{rule}/sub001.log").exists()
        assert (workflow_dir / f"results/benchmarks/{rule}/sub001.tsv").exists()


def test_nothing_to_do_after_a_complete_run(workflow_dir):
    assert planned_rules(workflow_dir) == set()


def test_changing_a_prep_parameter_reruns_only_that_stage_and_its_dependants(workflow_dir, tmp_path):
    changed = yaml.safe_load((workflow_dir / "config.yaml").read_text())
    changed["prep"]["detrend"] = False
    (workflow_dir / "config.yaml").write_text(yaml.safe_dump(changed))
    try:
        planned = planned_rules(workflow_dir)
    finally:
        (workflow_dir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    assert "mask_and_normalize" in planned
    assert "fetch_haxby" not in planned


def test_a_config_typo_fails_at_start_naming_the_key(tmp_path):
    config = tiny_config()
    config["prep"]["detrnd"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert "detrnd" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
