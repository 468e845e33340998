"""A training run that never outlives the workflow that started it, and never shares its checkpoint.

* :class:`CheckpointLock`: an exclusive ``flock`` on ``<checkpoint>.lock`` (released by the kernel
  when its holder dies, however it dies); a second trainer on the same checkpoint is refused
  with the holder's PID.
* :class:`AncestorWatch`: the processes that started this one (Snakemake, its shell, torchrun);
  when one of them is gone the trainer saves its checkpoint and stops instead of training on as
  an orphan.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
from pathlib import Path

import psutil

from ..errors import ModalMergeInputError


class CheckpointLock:
    """``with CheckpointLock(checkpoint_path):`` holds ``<checkpoint>.lock`` or raises naming its holder."""

    def __init__(self, checkpoint_path: str | Path):
        self.path = Path(checkpoint_path).with_name(Path(checkpoint_path).name + ".lock")
        self.handle = None

    def __enter__(self) -> "CheckpointLock":
        # folders made for the lock alone are removed again if nothing else was written to them
        self.made = [folder for folder in [self.path.parent, *self.path.parent.parents] if not folder.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            self.made = []
            raise ModalMergeInputError(
                f"Another training process ({holder}) is writing {self.path.with_suffix('')}. Wait for it to "
                "finish, or stop it (kill the PID) before training again; two trainers on one checkpoint "
                "would overwrite each other.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            self.path.unlink(missing_ok=True)  # while still held: nobody can take a lock on a file being removed
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        for folder in self.made:  # innermost first
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()


LAUNCHERS = ("snakemake", "torch.distributed.run", "torchrun")


class AncestorWatch:
    """Remembers the processes that started this one: the ancestors up to the nearest launcher
    (Snakemake or torchrun, within ``depth`` generations), else the parent alone (a user's shell
    above Snakemake may end under ``nohup`` without stopping the workflow). :meth:`gone` names the
    first that no longer runs."""

    def __init__(self, depth: int = 4):
        try:
            ancestors = [p for p in psutil.Process().parents()[:depth] if p.pid > 1]
        except psutil.Error:  # a process table we may not read: watch nothing rather than fail
            ancestors = []
        self.ancestors = ancestors[:1]
        for i, process in enumerate(ancestors):
            try:
                command = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if any(name in command for name in LAUNCHERS):
                self.ancestors = ancestors[:i + 1]
                break

    def gone(self) -> str | None:
        for process in self.ancestors:
            try:
                if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                    return f"PID {process.pid}"
            except psutil.NoSuchProcess:
                return f"PID {process.pid}"
        return None


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): receive SIGTERM when the parent dies (Linux only)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass
