"""A killed workflow leaves no trainer running, and the documented resume works (slow: real Snakemake)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import psutil
import pytest
import yaml

from modalmerge.training.guard import CheckpointLock
from test_workflow import SNAKEMAKE, run_snakemake, tiny_config

pytestmark = pytest.mark.slow


def trainers_in(workdir) -> list[psutil.Process]:
    """Live processes running the train_diffusion script of this working directory."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if process.info["cwd"] == str(workdir) and "train_diffusion" in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            continue
    return found


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def test_killing_snakemake_stops_training_and_the_rerun_resumes(tmp_path, workflow_dir):
    for stage in ("data", "prep"):  # copies keep their times, so Snakemake does not rerun them
        shutil.copytree(workflow_dir / "results" / stage, tmp_path / "results" / stage, copy_function=shutil.copy2)
    config = tiny_config()
    # long enough that only the kill can end it within the wait below (about 0.04-0.15 s a step on 2 cores)
    config["train"].update(steps=1500, checkpoint_every=10, checkpoint_min_interval_s=0, log_every=10, eval_every=1500)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    model = "results/model/sub001/model.pt"
    checkpoint = tmp_path / "results/model/sub001/checkpoints/last.pt"
    workflow = subprocess.Popen(SNAKEMAKE + ["--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml"),
                                             "--cores", "2", model], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for(checkpoint.exists, 240, "the first checkpoint")
        assert trainers_in(tmp_path), "the trainer should be running before the kill"
        workflow.send_signal(signal.SIGKILL)  # Snakemake gets no chance to clean up
        workflow.wait(30)
        killed_at = time.monotonic()
        wait_for(lambda: not trainers_in(tmp_path), 20, "the orphaned trainer to stop")
        assert time.monotonic() - killed_at < 20
    finally:
        for process in trainers_in(tmp_path):
            process.kill()
        if workflow.poll() is None:
            workflow.kill()
    with CheckpointLock(checkpoint):  # the dead trainer's lock is gone with it
        pass
    # the README's resume instructions: unlock, then rerun the incomplete job
    run_snakemake(tmp_path, "--unlock")
    stopped = (tmp_path / "results/logs/train_diffusion/sub001.log").read_text()
    assert "the process that started training" in stopped and "is gone: stopped at step" in stopped
    run_snakemake(tmp_path, "--cores", "2", "--rerun-incomplete", model)
    log = (tmp_path / "results/logs/train_diffusion/sub001.log").read_text()
    assert "resumed from" in log and "at step" in log
    assert (tmp_path / model).exists()
