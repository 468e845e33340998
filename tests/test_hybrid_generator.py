"""bench/hybrid_generator.py: the innovations the diffusion model is trained on, on the real slice,
and the numbers it compares."""

from __future__ import annotations

import sys

import numpy as np

from conftest import REPO
from modalmerge.analysis.generator_baselines import LinearGaussianGenerator
from modalmerge.data.dataset import PreparedData

sys.path.insert(0, str(REPO / "bench"))
from hybrid_generator import innovation_data, set_level  # noqa: E402


def test_innovation_data_is_the_slice_without_its_linear_part_and_inverts(prepared_slice):
    data = PreparedData.load(prepared_slice["volumes"])
    train, mask = ~data.is_test, data.mask
    linear = LinearGaussianGenerator(0).fit(data.X[train][:, mask], data.label_ids[train], data.runs[train])
    innovations = innovation_data(data, linear)
    assert innovations.X.shape == data.X.shape and np.all(innovations.X[:, ~mask] == 0)
    assert np.array_equal(innovations.label_ids, data.label_ids) and np.array_equal(innovations.is_test, data.is_test)
    z = innovations.X[train][:, mask]
    assert abs(z.std() - 1) < 0.05  # standardised on the training runs
    back = linear.from_innovations(innovations.X[:, mask], data.label_ids, data.runs)
    assert np.abs(back - data.X[:, mask]).max() < 1e-3


def test_set_level_reads_the_models_nested_entries_and_a_baselines_flat_ones():
    lags = {"lag1": 0.3, "lag2": 0.2, "lag3": 0.1}
    flat = {"ssim": 0.5, "connectivity_similarity": 0.4, "c2st_accuracy": 0.6, "c2st_rbf_accuracy": 0.7,
            "tstr_accuracy": 0.3, "voxel_std_map_correlation": 0.1, "mmd": {"mmd2": 0.01}, "global_std": 0.9,
            "temporal_autocorrelation": lags, "memorisation_ratio": 0.97}
    nested = {**flat, "global_std": {"synthetic": 0.9, "heldout_real": 1.0},
              "temporal_autocorrelation": {"synthetic": lags, "heldout_real": lags}, "memorisation": {"ratio": 0.97}}
    assert set_level(nested) == set_level({}, flat)
    assert set_level(nested)["lag2"] == 0.2 and set_level(nested)["mmd"] == 0.01
