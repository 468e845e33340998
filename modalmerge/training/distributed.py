"""Data-parallel training on PyTorch's own machinery: torchrun starts the processes, DDP averages
the gradients (NCCL between GPUs, gloo on CPUs). Nothing here schedules jobs.

One process stays the default. With ``train.processes`` above 1 (or ``auto`` inside a SLURM job
that was given several GPUs), the train stage starts ``python -m torch.distributed.run``
(torchrun) on :mod:`modalmerge.stages.train_cli`; each process finds its rank in the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). A user
who launches torchrun (or ``srun torchrun``) across nodes directly gets the same code path.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ..errors import ModalMergeInputError
from .guard import die_with_parent

log = logging.getLogger("modalmerge")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel job (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, summaries and progress bars."""
        return self.rank == 0

    def shard(self, global_batch: int) -> slice:
        """This rank's contiguous share of a global batch (the batch must split evenly)."""
        if global_batch % self.world_size:
            raise ModalMergeInputError(
                f"train.batch_size {global_batch} does not split evenly over {self.world_size} processes; "
                f"use a multiple of {self.world_size} (the global batch is the same as with one process).")
        size = global_batch // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process on a node (``cuda:LOCAL_RANK``); CPU stays CPU."""
        if device.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return device

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over all processes (the loss a single process would log)."""
        if not self.enabled:
            return float(value.detach())
        value = value.detach().float().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return float(value) / self.world_size

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def context_from_environment() -> DistributedContext:
    """The context torchrun (or ``srun`` with torchrun) put in the environment; rank 0 of 1 otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    return DistributedContext(rank=int(os.environ["RANK"]), world_size=world_size,
                              local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def start_process_group(context: DistributedContext, device: torch.device) -> None:
    """NCCL between GPUs, gloo on CPUs; the rendezvous address comes from torchrun's environment."""
    if not context.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=context.rank, world_size=context.world_size, timeout=timedelta(minutes=30))
    log.info("rank %d of %d joined the %s process group", context.rank, context.world_size, backend)


def stop_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def gpus_given_by_slurm() -> int:
    """GPUs SLURM gave this job on this node (0 outside SLURM or without GPUs)."""
    if "SLURM_JOB_ID" not in os.environ:
        return 0
    for variable in ("SLURM_GPUS_ON_NODE", "SLURM_GPUS_PER_NODE", "SLURM_GPUS"):
        value = os.environ.get(variable, "")
        count = value.rsplit(":", 1)[-1]
        if count.isdigit():
            return int(count)
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_processes(requested: int | str, device: torch.device) -> int:
    """``train.processes``: an integer, or ``auto`` = one per GPU SLURM gave the job (when training
    on CUDA and there are several), else 1. On CPU more processes split the cores (gloo)."""
    if requested == "auto":
        if device.type != "cuda":
            return 1
        return max(1, min(gpus_given_by_slurm(), torch.cuda.device_count()))
    processes = int(requested)
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise ModalMergeInputError(
            f"train.processes is {processes} but only {torch.cuda.device_count()} GPU(s) are visible here; "
            "NCCL needs one GPU per process. Lower train.processes or request more GPUs.")
    return processes


def launch_torchrun(processes: int, module: str, job: dict, threads: int) -> None:
    """Run ``python -m module --job job.json`` in ``processes`` processes on this node under torchrun
    (each process gets ``threads // processes`` threads); stream their output into this process's
    log; raise if any process fails."""
    threads_each = max(1, threads // processes)
    with tempfile.TemporaryDirectory(prefix="modalmerge-torchrun-") as work:
        job_path = Path(work) / "job.json"
        job_path.write_text(json.dumps({**job, "threads": threads_each}))
        # one argument after the module: torchrun's parser would take (prefixes of) its own options
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", module, "--job", str(job_path)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads_each), PYTHONUNBUFFERED="1")
        log.info("training in %d processes: %s", processes, " ".join(command))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                              preexec_fn=die_with_parent) as proc:
            tail = []
            for line in proc.stdout:
                line = line.rstrip()
                log.info("[torchrun] %s", line)
                tail = (tail + [line])[-30:]
            code = proc.wait()
    if code != 0:
        raise RuntimeError(f"distributed training ({processes} processes) failed with exit code {code}; "
                           "last lines:\n" + "\n".join(tail))
