"""inject-synthetic-anomalies: documented anomaly types with voxel-level ground truth, injected into
clips of the held-out runs only (never training data), with a fixed seed.

Strengths are in units of the data's own noise: the voxel's temporal standard deviation, which is
1 in the per-run z-scored space every stage works in. Types:

* ``blob``: a focal activation, a 3D Gaussian (sigma ``blob_sigma`` voxels, peak = strength) added to
  ``duration`` consecutive volumes, truncated below 10 % of its peak. Truth: the blob's voxels.
* ``dropout``: regional signal dropout, a sphere where the signal is scaled by (1 - strength),
  strength 1 = flat at the voxel mean. Dropout makes a volume look *more* normal to deviation
  detectors, so it needs a detector of missing variance (``variance_deficit``).
* ``spike``: a single-volume global intensity jump of strength (every brain voxel of one volume).
* ``motion``: a rigid shift of strength voxels (along the longest axis) of ``duration`` volumes,
  simulated on the *raw* EPI and carried into z units with the run's voxel std: a shift of the
  z-scored map would be nearly invisible, a shift of the raw image moves the anatomy's edges.
  Truth: voxels whose value changed by more than 1 noise std.
* ``noise_burst``: regional Gaussian noise of std = strength in a sphere for ``duration`` volumes.

Types no detector was designed or tuned for (``UNSEEN_TYPES``; not in the workflow's anomaly set,
used by ``bench/unseen_anomalies.py`` to ask whether a detector of "not normal" sees what it was not
built for). They were written after the detectors, from scanner and acquisition artifacts:

* ``frozen_frame``: a stuck reconstruction, strength = how many consecutive volumes repeat the
  volume before them (values stay in range; only the time course is wrong). Truth: those volumes.
* ``ghost``: a Nyquist (N/2) ghost, strength x the volume shifted by half the field of view along
  its second axis, added inside the brain for ``duration`` volumes. Truth: voxels it moved by more
  than 0.5 noise std.
* ``kspace_spike``: a single bad k-space sample, seen in image space as a plane wave
  ``strength * cos(2 pi (kx x / nx + ky y / ny) + phase)`` over the brain of one volume, with random
  integer spatial frequencies 2-6 and phase. Truth: that volume's brain voxels.
* ``drift``: scanner drift, a linear ramp from 0 to strength over the whole clip in every brain voxel.
  Truth: the voxels of the volumes after the first.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..data.clips import make_clips

ANOMALY_TYPES = ("blob", "dropout", "spike", "motion", "noise_burst")
UNSEEN_TYPES = ("frozen_frame", "ghost", "kspace_spike", "drift")


def sphere(mask: np.ndarray, centre, radius: float) -> np.ndarray:
    grid = np.indices(mask.shape).reshape(3, -1).T
    distance = np.sqrt((((grid - centre) * (np.array(mask.shape) > 1)) ** 2).sum(1)).reshape(mask.shape)
    return (distance <= radius) & mask


def gaussian_blob(mask: np.ndarray, centre, sigma: float) -> np.ndarray:
    grid = np.indices(mask.shape).reshape(3, -1).T
    squared = ((((grid - centre) * (np.array(mask.shape) > 1)) ** 2).sum(1)).reshape(mask.shape)
    return np.exp(-squared / (2 * sigma ** 2)) * mask


class AnomalyInjector:
    """Inject one anomaly into a clean clip; ``inject`` returns ``(clip, truth_mask)``.

    Parameters follow the module docstring; ``rng`` is a numpy Generator (the seed lives with the caller).
    """

    def __init__(self, mask, blob_sigma: float = 2.0, radius: float = 3.0, duration: int = 3):
        self.mask = mask.astype(bool)
        self.blob_sigma = blob_sigma
        self.radius = radius
        self.duration = duration

    def _frames(self, length: int, rng, duration: int | None = None) -> np.ndarray:
        duration = min(duration or self.duration, length)
        start = int(rng.integers(0, length - duration + 1))
        frames = np.zeros(length, bool)
        frames[start:start + duration] = True
        return frames

    def _centre(self, rng) -> np.ndarray:
        voxels = np.argwhere(self.mask)
        return voxels[rng.integers(len(voxels))]

    def inject(self, kind: str, clip: np.ndarray, strength: float, rng, raw_clip=None, voxel_std=None):
        clip = clip.copy()
        truth = np.zeros(clip.shape, bool)
        length = clip.shape[0]
        if kind == "blob":
            frames = self._frames(length, rng)
            blob = gaussian_blob(self.mask, self._centre(rng), self.blob_sigma)
            blob[blob < 0.1] = 0  # truncated at 10 % of the peak, so the truth mask is exact
            clip[frames] += strength * blob
            truth[frames] = blob > 0
        elif kind == "dropout":
            frames = self._frames(length, rng)
            region = sphere(self.mask, self._centre(rng), self.radius)
            clip[frames] = np.where(region, clip[frames] * (1 - strength), clip[frames])
            truth[frames] = region
        elif kind == "spike":
            frames = self._frames(length, rng, duration=1)
            clip[frames] += strength * self.mask
            truth[frames] = self.mask
        elif kind == "noise_burst":
            frames = self._frames(length, rng)
            region = sphere(self.mask, self._centre(rng), self.radius)
            clip[frames] += np.where(region, rng.normal(0, strength, size=clip[frames].shape), 0)
            truth[frames] = region
        elif kind == "motion":
            if raw_clip is None or voxel_std is None:
                raise ValueError("motion is simulated on raw images: pass raw_clip and voxel_std")
            frames = self._frames(length, rng)
            axis = int(np.argmax(self.mask.shape))
            offset = np.zeros(3)
            offset[axis] = strength * (1 if rng.random() < 0.5 else -1)
            for f in np.flatnonzero(frames):
                moved = ndimage.shift(raw_clip[f], offset, order=1, mode="nearest")
                change = np.where(self.mask, (moved - raw_clip[f]) / voxel_std, 0)
                clip[f] += change
                truth[f] = np.abs(change) > 1.0
        elif kind == "frozen_frame":
            repeats = int(strength)
            if not 1 <= repeats < length:
                raise ValueError(f"frozen_frame strength is the number of repeated volumes, 1 to {length - 1}; got {strength}.")
            start = int(rng.integers(1, length - repeats + 1))
            clip[start:start + repeats] = clip[start - 1]
            truth[start:start + repeats] = self.mask
        elif kind == "ghost":
            frames = self._frames(length, rng)
            shifted = np.roll(clip[frames], clip.shape[2] // 2, axis=2)
            change = np.where(self.mask, strength * shifted, 0)
            clip[frames] += change
            truth[frames] = np.abs(change) > 0.5
        elif kind == "kspace_spike":
            frames = self._frames(length, rng, duration=1)
            kx, ky = rng.integers(2, 7, size=2)
            x, y = np.meshgrid(np.arange(clip.shape[1]), np.arange(clip.shape[2]), indexing="ij")
            wave = np.cos(2 * np.pi * (kx * x / clip.shape[1] + ky * y / clip.shape[2]) + rng.uniform(0, 2 * np.pi))
            clip[frames] += strength * wave[..., None] * self.mask
            truth[frames] = self.mask
        elif kind == "drift":
            clip += strength * np.linspace(0, 1, length)[:, None, None, None] * self.mask
            truth[1:] = self.mask
        else:
            raise ValueError(f"anomaly type must be one of {', '.join(ANOMALY_TYPES + UNSEEN_TYPES)}; got {kind!r}.")
        clip[:, ~self.mask] = 0
        return clip.astype(np.float32), truth


def inject_anomalies(X, X_raw, runs, is_test, mask, clip_length: int, strengths: dict, seed: int = 0,
                     blob_sigma: float = 2.0, radius: float = 3.0, duration: int = 3) -> dict:
    """The anomaly set: every held-out clip once as a normal, and once per (type, strength) injected.

    Only held-out runs are touched (``is_test``); the raw images give the motion simulation and the
    voxel std used to express it in z units.
    """
    test_runs = sorted(set(runs[is_test].tolist()))
    clips, _, clip_runs, starts = make_clips(X, None, runs, test_runs, clip_length, stride=clip_length)
    raw_clips, _, _, _ = make_clips(X_raw, None, runs, test_runs, clip_length, stride=clip_length)
    voxel_std = {run: np.maximum(X_raw[runs == run].std(axis=0), 1e-6) for run in test_runs}
    injector = AnomalyInjector(mask, blob_sigma, radius, duration)
    rng = np.random.default_rng(seed)
    out_clips, truths, kinds, levels, sources = [clips], [np.zeros(clips.shape, bool)], ["none"] * len(clips), [0.0] * len(clips), list(range(len(clips)))
    # types in a fixed order (the documented one, then any other sorted), so the random draws and the
    # set do not depend on the order of the keys in the configuration file
    known = ANOMALY_TYPES + UNSEEN_TYPES
    order = sorted(strengths, key=lambda k: (known.index(k) if k in known else len(known), k))
    for kind, values in ((k, strengths[k]) for k in order):
        for strength in values:
            for i, clip in enumerate(clips):
                injected, truth = injector.inject(kind, clip, strength, rng, raw_clips[i], voxel_std[clip_runs[i]])
                out_clips.append(injected[None])
                truths.append(truth[None])
                kinds.append(kind)
                levels.append(float(strength))
                sources.append(i)
    return {
        "clips": np.concatenate(out_clips), "masks": np.concatenate(truths),
        "labels": (np.array(kinds) != "none").astype(np.int8), "types": np.array(kinds),
        "strengths": np.array(levels), "source_clip": np.array(sources),
        "clip_runs": clip_runs[np.array(sources)], "clip_starts": starts[np.array(sources)],
        "seed": seed, "clip_length": clip_length,
    }
