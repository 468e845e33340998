"""One process of a data-parallel training run: ``python -m torch.distributed.run ... -m modalmerge.stages.train_cli --job job.json``.

Started by :func:`modalmerge.stages.train.train_subject` through torchrun (``train.processes``
above 1), or by hand across nodes, e.g. inside a SLURM allocation of 2 nodes with 4 GPUs each::

    srun --ntasks-per-node=1 torchrun --nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d \\
        --rdzv-endpoint=$(scontrol show hostnames $SLURM_JOB_NODELIST | head -1):29500 \\
        -m modalmerge.stages.train_cli --job job.json

``job.json``: ``{"volumes": ".../volumes.npz", "split": ".../split.json", "threads": 4,
"config": {"model": {...}, "diffusion": {...}, "train": {...}},
"out": {"model": ..., "log": ..., "summary": ..., "checkpoint": ...}}`` (the config blocks as in
config.yaml, validated with :func:`modalmerge.config.validate_config`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..config import validate_config
from ..errors import ModalMergeInputError
from ..training.distributed import context_from_environment
from .train import train_process

JOB_KEYS = ("volumes", "split", "config", "out")
OUT_KEYS = ("model", "log", "summary", "checkpoint")


def read_job(path: str | Path) -> dict:
    try:
        job = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModalMergeInputError(f"cannot read the training job {path}: {err}") from err
    missing = [key for key in JOB_KEYS if key not in job] + [f"out.{key}" for key in OUT_KEYS if key not in job.get("out", {})]
    if missing:
        raise ModalMergeInputError(f"training job {path} lacks {', '.join(missing)}; see `python -m modalmerge.stages.train_cli --help`.")
    job["config"] = {key: value for key, value in validate_config(job["config"]).items()
                     if key in ("model", "diffusion", "train")}
    return job


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", required=True, help="JSON file: volumes, split, config, out, threads")
    args = parser.parse_args(argv)
    context = context_from_environment()
    logging.basicConfig(stream=sys.stderr, format=f"rank {context.rank}: %(levelname)s %(message)s")
    logging.getLogger("modalmerge").setLevel(logging.INFO if context.is_main else logging.WARNING)
    job = read_job(args.job)
    train_process(job["volumes"], job["split"], job["config"], job["out"], threads=job.get("threads", 1), progress=False)


if __name__ == "__main__":
    main()
