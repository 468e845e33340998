"""Data-parallel training under torchrun: 2 CPU processes (gloo) against 1 with the same global batch."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
import torch

from modalmerge.training.distributed import DistributedContext, gpus_given_by_slurm, resolve_processes
from modalmerge.errors import ModalMergeInputError
from modalmerge.diffusion.checkpoints import load_checkpoint
from modalmerge.stages.train import train_subject
from test_training import outputs, tiny_config

# Same global batch and seed in both runs; the only differences left are float summation orders
# (gradients averaged over 2 processes instead of summed in one batch), measured below 1e-6.
LOSS_RTOL = 1e-4


def distributed_config(processes, steps: int = 6) -> dict:
    config = tiny_config(steps=steps)
    # float32: the tolerances below were measured in float32; bf16 autocast (the default on a CPU with
    # native bf16) keeps 8 mantissa bits, far coarser than them
    config["train"].update(batch_size=4, processes=processes, log_every=1, eval_every=3, cpu_mixed_precision=False)
    return config


@pytest.fixture(scope="module")
def one_and_two_processes(tmp_path_factory, prepared_slice):
    runs = {}
    for processes in (1, 2):
        folder = tmp_path_factory.mktemp(f"procs{processes}")
        out = outputs(folder)
        summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], distributed_config(processes),
                                out, threads=2, progress=False)
        runs[processes] = {"folder": folder, "out": out, "summary": summary,
                           "log": pd.read_csv(out["log"], sep="\t")}
    return runs


def test_two_gloo_processes_give_the_loss_of_one_process_with_the_same_global_batch(one_and_two_processes):
    one, two = one_and_two_processes[1], one_and_two_processes[2]
    assert one["summary"]["processes"] == 1 and two["summary"]["processes"] == 2
    assert list(two["log"]["step"]) == list(one["log"]["step"]) == [1, 2, 3, 4, 5, 6]
    assert two["log"]["loss"].tolist() == pytest.approx(one["log"]["loss"].tolist(), rel=LOSS_RTOL)
    evaluated = one["log"]["heldout_loss"].notna()
    assert two["log"]["heldout_loss"][evaluated].tolist() == pytest.approx(
        one["log"]["heldout_loss"][evaluated].tolist(), rel=LOSS_RTOL)
    w1 = load_checkpoint(one["out"]["model"])["model"]
    w2 = load_checkpoint(two["out"]["model"])["model"]
    for name in w1:
        assert torch.allclose(w1[name], w2[name], rtol=1e-3, atol=1e-5), name


def test_rank_zero_alone_writes(one_and_two_processes):
    two = one_and_two_processes[2]
    files = sorted(str(p.relative_to(two["folder"])) for p in two["folder"].rglob("*") if p.is_file())
    assert files == ["ckpt/last.pt", "model.pt", "summary.json", "training_log.tsv"]
    log = two["log"]
    assert log["step"].is_unique  # a second writer would have appended its own rows
    assert json.loads(open(two["out"]["summary"]).read())["processes"] == 2
    assert load_checkpoint(two["out"]["model"])["metadata"]["processes"] == 2


KILL_STEPS = 40  # long enough to kill mid-way: torchrun starts in seconds, a step takes tens of ms


@pytest.fixture(scope="module")
def straight_two_processes(tmp_path_factory, prepared_slice) -> dict:
    """The uninterrupted 2-process run the killed ones must reproduce."""
    out = outputs(tmp_path_factory.mktemp("straight"))
    train_subject(prepared_slice["volumes"], prepared_slice["split"], distributed_config(2, KILL_STEPS), out,
                  threads=2, progress=False)
    return out


def start_and_kill(folder, prepared_slice, processes: int, after_step: int = 3) -> int:
    """Train in a child process under the same configuration; SIGKILL it (and its torchrun) once the
    rolling checkpoint holds ``after_step`` or more; return the step the checkpoint holds."""
    out = outputs(folder)
    config = distributed_config(processes, KILL_STEPS)
    config["train"]["checkpoint_every"] = 1  # a run-only key: not part of the checkpoint's fingerprint
    folder.mkdir(parents=True, exist_ok=True)
    job = folder / "job.json"
    job.write_text(json.dumps({"config": config, "out": out, "volumes": prepared_slice["volumes"],
                               "split": prepared_slice["split"]}))
    code = ("import json, sys; from modalmerge.stages.train import train_subject; j = json.load(open(sys.argv[1])); "
            "train_subject(j['volumes'], j['split'], j['config'], j['out'], threads=2, progress=False)")
    child = subprocess.Popen([sys.executable, "-c", code, str(job)], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if os.path.exists(out["checkpoint"]) and load_checkpoint(out["checkpoint"])["step"] >= after_step:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the run ended before it could be killed"
        family = psutil.Process(child.pid).children(recursive=True)  # torchrun and its workers
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(30)
    # workers outside the killed process group see their torchrun gone, save and stop within seconds
    _, alive = psutil.wait_procs(family, timeout=20)
    for process in alive:
        process.kill()
    assert not alive, f"{len(alive)} training process(es) outlived the killed run"
    step = load_checkpoint(out["checkpoint"])["step"]
    assert after_step <= step < KILL_STEPS and not os.path.exists(out["model"])
    return step


@pytest.mark.parametrize("resume_processes", [2, 1])
def test_a_killed_two_process_run_resumes_mid_way_to_the_same_weights(tmp_path, prepared_slice, caplog, resume_processes,
                                                                      straight_two_processes):
    """Killed mid-way under the same configuration, then resumed (by 2 processes, or by 1): the
    "resumed" log line names the step, and the final weights equal an uninterrupted run's."""
    straight = straight_two_processes
    killed_at = start_and_kill(tmp_path / "killed", prepared_slice, 2)
    caplog.set_level("INFO", logger="modalmerge")
    out = outputs(tmp_path / "killed")
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"],
                            distributed_config(resume_processes, KILL_STEPS), out, threads=2, progress=False)
    assert summary["steps"] == KILL_STEPS
    assert f"at step {killed_at}" in caplog.text and "resumed from" in caplog.text
    resumed, reference = load_checkpoint(out["model"]), load_checkpoint(straight["model"])
    # 2 -> 2 processes repeats the same float operations; 2 -> 1 sums gradients in another order
    # (measured below 1e-6 relative over 6 steps, see LOSS_RTOL)
    tolerance = {"rtol": 0, "atol": 0} if resume_processes == 2 else {"rtol": 1e-3, "atol": 1e-5}
    for part in ("model", "ema"):
        for name, value in reference[part].items():
            assert torch.allclose(resumed[part][name], value, **tolerance), (part, name)
    log = pd.read_csv(out["log"], sep="\t")
    assert log["step"].tolist() == list(range(1, KILL_STEPS + 1))  # rebuilt from the checkpoint: no gap, no duplicate


def test_the_global_batch_must_split_evenly_over_processes(tmp_path, prepared_slice):
    config = distributed_config(3)
    with pytest.raises(ModalMergeInputError, match="does not split evenly over 3 processes"):
        train_subject(prepared_slice["volumes"], prepared_slice["split"], config, outputs(tmp_path), progress=False)
    assert not any(tmp_path.iterdir())


def test_shards_cover_the_global_batch_once():
    shards = [DistributedContext(rank=r, world_size=4).shard(8) for r in range(4)]
    assert [list(range(8))[s] for s in shards] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_auto_is_one_process_on_cpu_and_one_per_gpu_slurm_gave(monkeypatch):
    assert resolve_processes("auto", torch.device("cpu")) == 1
    assert resolve_processes(2, torch.device("cpu")) == 2
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert gpus_given_by_slurm() == 0
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "4")
    assert gpus_given_by_slurm() == 4
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "a100:2")
    assert gpus_given_by_slurm() == 2


def test_more_gpu_processes_than_gpus_is_refused_with_advice():
    visible = torch.cuda.device_count()
    with pytest.raises(ModalMergeInputError, match=f"only {visible} GPU.*NCCL needs one GPU per process"):
        resolve_processes(visible + 1, torch.device("cuda"))


def test_changing_only_the_process_count_keeps_the_checkpoint_resumable():
    from modalmerge.training.trainer import config_fingerprint
    a = {"model": {}, "train": {"steps": 3, "processes": 1, "device": "cpu"}}
    b = copy.deepcopy(a)
    b["train"].update(processes=4, device="cuda")
    c = copy.deepcopy(a)
    c["train"]["steps"] = 4
    assert config_fingerprint(a) == config_fingerprint(b) != config_fingerprint(c)


def test_the_processes_output_goes_to_the_stage_log(tmp_path, prepared_slice, caplog):
    caplog.set_level("INFO", logger="modalmerge")
    train_subject(prepared_slice["volumes"], prepared_slice["split"], distributed_config(2, steps=2),
                  outputs(tmp_path), threads=2, progress=False)
    assert "training in 2 processes: " in caplog.text and "torch.distributed.run" in caplog.text
    assert "[torchrun] rank 0: INFO rank 0 of 2 joined the gloo process group" in caplog.text
    assert "rank 1: INFO" not in caplog.text  # other ranks log warnings and errors only


def test_bad_input_fails_before_any_process_starts(tmp_path, prepared_slice, caplog):
    caplog.set_level("INFO", logger="modalmerge")  # else the INFO line below could never be seen
    split = json.loads(open(prepared_slice["split"]).read())
    split["test_runs"] = split["test_runs"] + [split["train_runs"][0]]
    bad_split = tmp_path / "split.json"
    bad_split.write_text(json.dumps(split))
    with pytest.raises(ModalMergeInputError, match="are both train and test"):
        train_subject(prepared_slice["volumes"], bad_split, distributed_config(2), outputs(tmp_path / "out"),
                      progress=False)
    assert "training in 2 processes" not in caplog.text
    assert not (tmp_path / "out").exists()
