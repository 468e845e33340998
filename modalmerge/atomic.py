"""Write outputs all-or-nothing, so a failed stage never leaves partial files behind.

Temporary files and folders are made private by ``tempfile``; before the rename they get the
mode the user's umask gives new files (so colleagues on a shared filesystem can open the report).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: Path, target: Path, mode: int) -> None:
    """Give ``tmp`` the umask-respecting ``mode`` and rename it to ``target``."""
    os.chmod(tmp, mode & ~current_umask())
    os.replace(tmp, target)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike):
    """Yield a temporary directory that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    _publish(tmp, target, 0o777)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike):
    """Yield a temporary path (same suffixes) that is renamed to ``target`` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _publish(tmp, target, 0o666)
