"""Every clip window of the project: clips are ``T`` consecutive volumes of one run.

* :func:`make_clips`: sliding windows inside runs (training clips, stride 1; held-out clips,
  stride ``T``);
* :func:`covering_clips`: clips that cover a whole run end to end (synthetic runs, features);
* :func:`label_blocks` / :func:`stimulus_blocks`: consecutive volumes with one label;
* :func:`block_clips`: one clip centred on each stimulus block (the diffusion classifier).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..errors import ModalMergeInputError


def clip_windows(runs: np.ndarray, keep_runs, clip_length: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Volume indices of every window of ``clip_length`` inside one run of ``keep_runs``:
    ``(windows (n, T), clip_runs (n,))``."""
    windows, clip_runs = [], []
    for run in keep_runs:
        index = np.flatnonzero(runs == run)
        for start in range(0, len(index) - clip_length + 1, stride):
            windows.append(index[start:start + clip_length])
            clip_runs.append(run)
    if not windows:
        raise ModalMergeInputError(f"No clip of {clip_length} volumes fits in runs {list(keep_runs)}; lower model.clip_length.")
    return np.stack(windows), np.array(clip_runs)


def make_clips(X: np.ndarray, label_ids: np.ndarray | None, runs: np.ndarray, keep_runs, clip_length: int,
               stride: int = 1):
    """Windows of ``clip_length`` consecutive volumes inside one run of ``keep_runs``.

    Returns ``(clips (n, T, x, y, z) float32, labels (n, T) or None, clip_runs (n,), starts (n,))``;
    ``starts`` index the first volume of each clip in ``X``.
    """
    windows, clip_runs = clip_windows(runs, keep_runs, clip_length, stride)
    labels = None if label_ids is None else label_ids[windows]
    return X[windows].astype(np.float32), labels, clip_runs, windows[:, 0]


def covering_clips(sequence: np.ndarray, clip_length: int) -> tuple[np.ndarray, list[slice]]:
    """Cover a run's sequence (labels or volume indices) with clips: ``(clips (n, T), keep)``.

    Clips are consecutive; the last one is shifted back to end at the run's end, and
    ``keep[i]`` says which of its volumes are new (so the run is rebuilt without overlap).
    """
    n = len(sequence)
    if n < clip_length:
        raise ModalMergeInputError(f"A run of {n} volumes is shorter than model.clip_length {clip_length}.")
    starts = list(range(0, n - clip_length + 1, clip_length))
    keep = [slice(0, clip_length)] * len(starts)
    if starts[-1] + clip_length < n:
        covered = starts[-1] + clip_length
        starts.append(n - clip_length)
        keep.append(slice(clip_length - (n - covered), clip_length))
    return np.stack([sequence[s:s + clip_length] for s in starts]), keep


def label_blocks(labels: np.ndarray, runs: np.ndarray) -> Iterator[tuple[int, int, int, int]]:
    """``(run, first index, last index + 1, label)`` of every stretch of one label inside a run."""
    for run in np.unique(runs):
        index = np.flatnonzero(runs == run)
        start = 0
        for i in range(1, len(index) + 1):
            if i == len(index) or labels[index[i]] != labels[index[start]]:
                yield int(run), int(index[start]), int(index[i - 1]) + 1, labels[index[start]]
                start = i


def stimulus_blocks(label_ids: np.ndarray, runs: np.ndarray, rest_id: int) -> list[tuple[int, int, int, int]]:
    """``(run, first index, last index + 1, label)`` of every stimulus (non-rest) block."""
    return [(run, start, stop, int(label)) for run, start, stop, label in label_blocks(label_ids, runs)
            if label != rest_id]


def block_clips(X: np.ndarray, label_ids: np.ndarray, runs: np.ndarray, blocks, clip_length: int, rest_id: int):
    """For each block: a clip of ``clip_length`` volumes centred on it (inside its run), the design
    labels with the block's frames marked unknown, and the boolean block-frame mask."""
    clips, design, target = [], [], []
    for run, start, stop, _ in blocks:
        index = np.flatnonzero(runs == run)
        first, last = index[0], index[-1] + 1
        centre = (start + stop) // 2
        lo = int(np.clip(centre - clip_length // 2, first, last - clip_length))
        window = np.arange(lo, lo + clip_length)
        clips.append(X[window])
        in_block = (window >= start) & (window < stop)
        labels = label_ids[window].copy()
        labels[in_block] = rest_id  # placeholder, replaced by each candidate
        design.append(labels)
        target.append(in_block)
    return np.stack(clips).astype(np.float32), np.stack(design), np.stack(target)
