"""The atomic writers: all or nothing, and files others on a shared filesystem can read."""

from __future__ import annotations

import os
import stat

import pytest

from modalmerge.atomic import atomic_directory, atomic_file


@pytest.fixture
def umask():
    def set_umask(value):
        previous.append(os.umask(value))
    previous = []
    yield set_umask
    if previous:
        os.umask(previous[0])


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775), (0o077, 0o600, 0o700)])
def test_outputs_get_the_mode_the_umask_gives(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    with atomic_file(tmp_path / "report" / "index.html") as tmp:
        tmp.write_text("<html></html>")
    with atomic_directory(tmp_path / "data" / "sub001") as tmp:
        (tmp / "dataset.json").write_text("{}")
    assert stat.S_IMODE((tmp_path / "report" / "index.html").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "data" / "sub001").stat().st_mode) == dir_mode


def test_a_file_that_fails_halfway_leaves_neither_destination_nor_temporary(tmp_path):
    target = tmp_path / "out" / "auc.json"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_file(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path):
    target = tmp_path / "auc.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target) as tmp:
            tmp.write_text("new, half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["auc.json"]


def test_a_directory_that_fails_halfway_leaves_nothing_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "data" / "sub001"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    with pytest.raises(OSError):
        with atomic_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise OSError("no space left")
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["sub001"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]
