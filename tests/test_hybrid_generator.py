"""bench/hybrid_generator.py: the innovations the diffusion model is trained on, on the real slice,
and the summary it writes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from conftest import REPO
from modalmerge.analysis.generator_baselines import LinearGaussianGenerator
from modalmerge.data.dataset import PreparedData

sys.path.insert(0, str(REPO / "bench"))
from hybrid_generator import innovation_data, summarise  # noqa: E402


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
    # whitened: the real slice's innovations are spatially correlated (neighbouring voxels), the
    # whitened ones much less so, and they colour back to the data
    white = innovation_data(data, linear, whiten=True)
    w = white.X[train][:, mask]
    off = ~np.eye(mask.sum(), dtype=bool)
    before, after = np.abs(np.corrcoef(z.T)[off]).mean(), np.abs(np.corrcoef(w.T)[off]).mean()
    assert after < 0.5 * before, (before, after)
    back = linear.from_innovations(white.X[:, mask], data.label_ids, data.runs, whiten=True)
    assert np.abs(back - data.X[:, mask]).max() < 1e-3


def test_the_summary_pairs_the_hybrid_with_the_same_seeds_linear_part(tmp_path):
    """On the stored development-split runs: the model's nested entries and the classical generator's
    flat ones are read for the same measure, and differenced seed by seed."""
    folder = REPO / "bench" / "results" / "hybrid_generator_dev"
    per_seed = {seed: json.loads((folder / f"seed-{seed}" / "fidelity.json").read_text()) for seed in (0, 1, 2)}
    summary = summarise(per_seed, {}, tmp_path)["measures"]
    fids = list(per_seed.values())
    classical = [f["generator_baselines"]["gaussian_var1"] for f in fids]
    connectivity = summary["connectivity similarity"]
    assert connectivity["difference"]["values"] == pytest.approx(
        [f["connectivity_similarity"] - g["connectivity_similarity"] for f, g in zip(fids, classical)])
    assert summary["autocorrelation lag 2"]["hybrid"]["values"] == pytest.approx(
        [f["temporal_autocorrelation"]["synthetic"]["lag2"] for f in fids])
    assert summary["global std"]["gaussian_var1"]["values"] == pytest.approx([g["global_std"] for g in classical])
    memorisation = summary["memorisation ratio (>= 0.95)"]
    assert memorisation["hybrid"]["values"] == pytest.approx([f["memorisation"]["ratio"] for f in fids])
    assert memorisation["gaussian_var1"]["values"] == pytest.approx([g["memorisation_ratio"] for g in classical])
    assert "plain" not in connectivity and (tmp_path / "summary.md").exists()
