"""Data-parallel training under torchrun: 2 CPU processes (gloo) against 1 with the same global batch."""

from __future__ import annotations

import copy
import json
import os

import pandas as pd
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
    config["train"].update(batch_size=4, processes=processes, log_every=1, eval_every=3)
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


def test_a_killed_two_process_run_resumes_from_its_checkpoint(tmp_path, prepared_slice, one_and_two_processes):
    out = outputs(tmp_path)
    short = distributed_config(2, steps=3)  # "killed" after the checkpoint at step 3
    train_subject(prepared_slice["volumes"], prepared_slice["split"], short, out, threads=2, progress=False)
    os.remove(out["model"])
    summary = train_subject(prepared_slice["volumes"], prepared_slice["split"], distributed_config(2), out,
                            threads=2, progress=False)
    assert summary["steps"] == 6
    resumed = pd.read_csv(out["log"], sep="\t")
    straight = one_and_two_processes[2]["log"]
    assert resumed["loss"].tolist() == pytest.approx(straight["loss"].tolist(), rel=LOSS_RTOL)


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
    split = json.loads(open(prepared_slice["split"]).read())
    split["test_runs"] = split["test_runs"] + [split["train_runs"][0]]
    bad_split = tmp_path / "split.json"
    bad_split.write_text(json.dumps(split))
    with pytest.raises(ModalMergeInputError, match="are both train and test"):
        train_subject(prepared_slice["volumes"], bad_split, distributed_config(2), outputs(tmp_path / "out"),
                      progress=False)
    assert "training in 2 processes" not in caplog.text
    assert not (tmp_path / "out").exists()
