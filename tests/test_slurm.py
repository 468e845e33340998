"""The real workflow on a real SLURM cluster (tests/slurm/cluster.sh), through the workflow profile.

Not part of `make test`: it needs root and SLURM's daemons. Run it with `make test-slurm` (which
starts the one-node cluster, runs this file and stops the cluster); CI does. Two subjects (the
embedded subject 1 laid out twice as a custom study) give per-subject jobs that can run side by
side; the node has one fake GPU, so the GPU jobs (train_diffusion, sample) must queue one by one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from test_workflow import tiny_config

pytestmark = pytest.mark.slurm

SUBJECTS = ["sub001", "sub002"]
GPU_RULES = {"train_diffusion", "sample"}
LOCAL_RULES = {"fetch_haxby", "report_index", "all"}
# timeout -k: a hung run (e.g. a status check waiting for ever) cannot eat CI's time
SNAKEMAKE_TIMEOUT_S = 1500


def slurm_dir() -> Path:
    return Path(os.environ.get("MODALMERGE_SLURM_DIR", "/tmp/modalmerge-slurm"))


@pytest.fixture(scope="module")
def slurm_env() -> dict:
    env = dict(os.environ, SLURM_CONF=str(slurm_dir() / "slurm.conf"))
    probe = subprocess.run(["sinfo", "-h", "-o", "%t %G"], env=env, capture_output=True, text=True)
    if probe.returncode != 0 or "gpu" not in probe.stdout:
        pytest.fail("No test SLURM cluster answers (sinfo: "
                    f"{(probe.stdout + probe.stderr).strip()!r}). Start it with "
                    "`bash tests/slurm/cluster.sh start` or run `make test-slurm`.")
    return env


def lay_out_two_subjects(study: Path, dataset: Path) -> dict:
    """The embedded subject in a custom study layout, under two subject names."""
    for subject in SUBJECTS:
        shutil.copytree(dataset, study / subject)
    return {"bold": str(study / "{subject}/func/run-{run:02d}_bold.nii.gz"),
            "events": str(study / "{subject}/func/run-{run:02d}_events.tsv"),
            "mask": str(study / "{subject}/masks/nonzero.nii.gz"),
            "runs": list(range(1, 13)), "tr": 2.5}


def job_records(job_ids: list[str], env: dict) -> dict[str, dict]:
    """`scontrol show job` for each id (the jobs stay listed for MinJobAge after they end)."""
    records = {}
    for job_id in job_ids:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], env=env, capture_output=True, text=True,
                             check=True).stdout
        records[job_id] = dict(re.findall(r"(\w+)=(\S*)", out))
    return records


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, embedded_dataset, slurm_env) -> dict:
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    config = tiny_config()
    config["subjects"] = SUBJECTS
    config["data"] = {"source": "custom", "custom": lay_out_two_subjects(workdir / "study", embedded_dataset)}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [
        "timeout", "-k", "30", str(SNAKEMAKE_TIMEOUT_S),
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(workdir / "config.yaml"),
        "--workflow-profile", str(REPO / "profiles/slurm"),  # the profile users run, unchanged
        # what this accounting-less test cluster needs on top (README: "Running on a cluster")
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
        "--slurm-no-account", "--slurm-keep-successful-logs", "--latency-wait", "5", "--retries", "0",
        "--verbose",
    ]
    started = datetime.now()
    result = subprocess.run(command, env=slurm_env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    (workdir / "snakemake_output.txt").write_text(output)
    assert result.returncode == 0, f"snakemake on SLURM failed ({result.returncode}):\n{output[-6000:]}"
    job_ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    return {"workdir": workdir, "output": output, "job_ids": job_ids,
            "records": job_records(job_ids, slurm_env), "wall_s": (datetime.now() - started).total_seconds()}


def rule_of(record: dict) -> str:
    match = re.match(r"rule_(.+?)(_wildcards_.*)?$", record["Comment"])
    return match.group(1)


def test_every_job_but_the_local_ones_went_through_slurm_and_completed(slurm_run):
    records = slurm_run["records"]
    rules = sorted(rule_of(r) for r in records.values())
    per_subject = {"mask_and_normalize", "train_diffusion", "sample", "evaluate_ssim", "decode_classical", "decode",
                   "inject_synthetic_anomalies", "score_auc", "report"}
    assert rules == sorted(r for r in per_subject for _ in SUBJECTS)
    assert {r["JobState"] for r in records.values()} == {"COMPLETED"}
    assert not LOCAL_RULES & set(rules)
    # the report gathers both subjects' jobs
    assert (slurm_run["workdir"] / "results/report/index.html").exists()
    for subject in SUBJECTS:
        assert (slurm_run["workdir"] / f"results/report/{subject}/index.html").exists()


def test_squeue_and_slurmctld_saw_the_jobs(slurm_run, slurm_env):
    listed = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i %T"], env=slurm_env, capture_output=True,
                            text=True, check=True).stdout
    states = dict(line.split() for line in listed.splitlines())
    for job_id in slurm_run["job_ids"]:
        assert states.get(job_id) == "COMPLETED"
    controller_log = (slurm_dir() / "logs/slurmctld.log").read_text()
    for job_id in slurm_run["job_ids"]:
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job_id}\b", controller_log), job_id
        # started by the main scheduler ("Allocate") or by backfill ("Started")
        assert re.search(rf"(sched: Allocate JobId={job_id}\b|_start_job: Started JobId={job_id}\b)", controller_log), job_id
        assert re.search(rf"_job_complete: JobId={job_id} done", controller_log), job_id


def test_the_gpu_resource_reaches_slurm_as_a_gpu_request(slurm_run):
    submissions = re.findall(r"sbatch call: (.*)", slurm_run["output"])
    assert submissions
    for call in submissions:
        rule = re.search(r"--comment '?rule_([a-z_]+?)(_wildcards|'|\s)", call).group(1)
        assert ("--gpus=1" in call) == (rule in GPU_RULES), call
    for record in slurm_run["records"].values():
        wants_gpu = "gpu" in record.get("TresPerJob", "")
        assert wants_gpu == (rule_of(record) in GPU_RULES), record
    # inside the job, the training saw the GPU SLURM gave it (recorded in its summary)
    for subject in SUBJECTS:
        summary = json.loads((slurm_run["workdir"] / f"results/model/{subject}/training_summary.json").read_text())
        assert summary["slurm"]["job_id"] in slurm_run["job_ids"]
        assert slurm_run["records"][summary["slurm"]["job_id"]]["Comment"] == f"rule_train_diffusion_wildcards_{subject}"
        assert summary["slurm"]["gpus_given"] == 1


def test_two_gpu_jobs_never_ran_at_once_but_subjects_ran_side_by_side(slurm_run):
    spans = [(seconds(r["StartTime"]), seconds(r["EndTime"]), rule_of(r)) for r in slurm_run["records"].values()]
    gpu = sorted((start, end) for start, end, rule in spans if rule in GPU_RULES)
    assert len(gpu) == 4
    for (_, end), (next_start, _) in zip(gpu, gpu[1:]):
        assert next_start >= end, gpu
    # and it was SLURM that made them wait: a GPU job submitted while another held the GPU
    # started only once that one had ended (Snakemake itself puts no limit on `gpu` here)
    gpu_jobs = [r for r in slurm_run["records"].values() if rule_of(r) in GPU_RULES]
    queued = [(a["JobId"], b["JobId"]) for a in gpu_jobs for b in gpu_jobs if a is not b
              and seconds(b["SubmitTime"]) < seconds(a["EndTime"]) <= seconds(b["StartTime"])]
    assert queued, gpu_jobs
    # at some moment two jobs were running together (the node has 8 CPUs for 1-4 CPU jobs)
    overlaps = [(a, b) for a in spans for b in spans if a is not b and a[0] < b[0] < a[1]]
    assert overlaps, spans


def test_the_workflow_is_complete_after_the_cluster_run(slurm_run, slurm_env):
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                          str(slurm_run["workdir"]), "--configfile", str(slurm_run["workdir"] / "config.yaml"),
                          "-n", "--cores", "1"], env=slurm_env, capture_output=True, text=True)
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
