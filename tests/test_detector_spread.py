"""bench/detector_spread.py: its rule (mean no lower, half the spread over draws, blobs kept) on made-up runs."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from detector_spread import decide  # noqa: E402


def runs(workflow, candidate, blob_drop=0.0):
    """Three models x len(workflow) draws; each setting's AUROCs per draw, the same for every model."""
    entry = lambda auroc, blob: {"auroc": auroc, "blob_voxel_auprc": blob}  # noqa: E731
    return {f"seed-{m}": {d: {"t200 s2 d2": entry(w, 0.3), "t200 s1 d4": entry(c, 0.3 - blob_drop - 0.01 * (d % 2)),
                              "ridge_whitened_z": entry(0.71, 0.3)}
                          for d, (w, c) in enumerate(zip(workflow, candidate))} for m in range(3)}


@pytest.mark.parametrize("candidate,blob_drop,adopted", [
    ([0.70, 0.71, 0.72, 0.70, 0.71], 0.0, True),    # same mean, a fraction of the spread
    ([0.60, 0.80, 0.75, 0.62, 0.80], 0.0, False),   # as spread as the workflow
    ([0.66, 0.67, 0.68, 0.66, 0.67], 0.0, False),   # steadier but lower
    ([0.70, 0.71, 0.72, 0.70, 0.71], 0.2, False),   # loses the blobs' voxels
])
def test_the_rule(candidate, blob_drop, adopted):
    decision = decide(runs([0.60, 0.80, 0.70, 0.65, 0.75], candidate, blob_drop))
    assert (decision["adopted"] == "t200 s1 d4") is adopted
    assert np.isclose(decision["auroc_mean"]["ridge_whitened_z"], 0.71)
