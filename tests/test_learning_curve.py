"""The learning curve (linear SVM on 1, 2, 3, ... training runs, with and without synthetic runs):
it finds the value of synthetic data drawn from the true process, shuffled synthetic labels destroy
it, the generator sees the chosen runs only, and bad sizes are refused before any decoder runs."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.analysis.learning_curve import GeneratorSynthesiser, run_subsets, scarce_data_curve
from modalmerge.errors import ModalMergeInputError

N_VOXELS, LENGTH, CATEGORIES = 40, 64, [0, 1, 2, 3]
REST = 4


def design(rng) -> np.ndarray:
    """Blocks of 8 volumes: each category once, rest between."""
    blocks = [np.full(8, c) for c in rng.permutation(CATEGORIES)]
    return np.concatenate([np.concatenate([b, np.full(8, REST)]) for b in blocks])


def planted(n_runs: int = 8, seed: int = 0, signal: float = 0.35):
    """A weak category-selective pattern per category in AR(1) noise; runs 6 and 7 are held out."""
    rng = np.random.default_rng(seed)
    means = {c: signal * rng.normal(size=N_VOXELS) for c in CATEGORIES}
    means[REST] = np.zeros(N_VOXELS)

    def draw(labels, rng):
        noise = np.zeros((len(labels), N_VOXELS))
        for t in range(len(labels)):
            noise[t] = (0.5 * noise[t - 1] if t else 0) + rng.normal(size=N_VOXELS)
        return np.stack([means[int(c)] for c in labels]) + noise

    X, labels, runs = [], [], []
    for run in range(n_runs):
        y = design(rng)
        X.append(draw(y, rng))
        labels.append(y)
        runs.append(np.full(len(y), run))
    return np.concatenate(X), np.concatenate(labels), np.concatenate(runs), draw


def test_synthetic_runs_from_the_true_process_help_and_shuffled_labels_do_not():
    X, labels, runs, draw = planted()
    subsets = run_subsets(range(6), [1], repeats=4, seed=0)
    rng = np.random.default_rng(1)

    def oracle(subset, index):  # ten runs from the true process per chosen run
        designs = [design(rng) for _ in range(10 * len(subset))]
        return np.concatenate([draw(d, rng) for d in designs]), np.concatenate(designs)

    def shuffled(subset, index):
        syn_X, syn_y = oracle(subset, index)
        return syn_X, rng.permutation(syn_y)

    helped = scarce_data_curve(X, labels, runs, [6, 7], CATEGORIES, subsets, oracle)["by_size"]["1"]
    hurt = scarce_data_curve(X, labels, runs, [6, 7], CATEGORIES, subsets, shuffled)["by_size"]["1"]
    # 4 subsets x 64 held-out category volumes; over data seeds 0-3 the oracle's mean gain was 0.17-0.26
    # (smallest single subset 0.016), the shuffled labels' mean gain -0.07 to -0.23 and their
    # synthetic-only accuracy 0.21-0.29
    assert helped["gain"]["mean"] > 0.1 and min(helped["gain"]["values"]) > 0
    assert helped["synthetic_only"]["mean"] > helped["real"]["mean"]
    assert hurt["gain"]["mean"] < 0 and hurt["synthetic_only"]["mean"] < 0.25 + 0.1  # chance 0.25


def test_the_generator_is_fitted_on_the_chosen_runs_only_and_the_result_does_not_depend_on_processes():
    X, labels, runs, _ = planted()
    poisoned = X.copy()
    poisoned[np.isin(runs, [0, 1, 3, 4, 5])] = np.nan  # a fit that touched another run would fail
    synthesise = GeneratorSynthesiser(poisoned, labels, runs, runs_per_run=2, seed=0)
    subsets = [(2,)]
    one = scarce_data_curve(poisoned, labels, runs, [6, 7], CATEGORIES, subsets, synthesise, n_jobs=1)
    two = scarce_data_curve(poisoned, labels, runs, [6, 7], CATEGORIES, subsets, synthesise, n_jobs=2)
    assert one == two
    row = one["subsets"][0]
    assert row["runs"] == [2] and row["n_real"] == 32 and row["n_synthetic"] == 64  # 2 runs x 4 blocks of 8
    assert all(np.isfinite(row[key]) for key in ("real", "augmented", "synthetic_only"))


def test_subsets_are_distinct_per_size_and_sizes_beyond_the_training_runs_are_refused():
    subsets = run_subsets([1, 2, 3, 4, 5], [1, 2, 5], repeats=3, seed=0)
    assert [len(s) for s in subsets] == [1, 1, 1, 2, 2, 2, 5, 5, 5]
    assert len(set(subsets[:3])) == 3 and len(set(subsets[3:6])) == 3
    assert all(set(s) <= {1, 2, 3, 4, 5} for s in subsets)
    with pytest.raises(ModalMergeInputError, match="decode.learning_curve_sizes"):
        run_subsets([1, 2, 3], [1, 4], repeats=2, seed=0)


@pytest.mark.slow
def test_the_diffusion_learning_curve_trains_each_model_on_its_subset_only(tmp_path):
    """bench/learning_curve.py with a tiny model: one training per (size, seed) on that subset's runs
    only, scored on the held-out runs beside the classical generator with the same label sequences."""
    import json
    import subprocess
    import sys

    import yaml
    from conftest import REPO
    from test_workflow import tiny_config
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_config()))
    subprocess.run([sys.executable, str(REPO / "bench/learning_curve.py"), "--configfile", str(tmp_path / "tiny.yaml"),
                    "--sizes", "2", "--seeds", "0", "--out", str(tmp_path / "out"), "--cores", "2"], check=True, timeout=900)
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    subset = summary["2"]["runs"][0]["subset"]
    assert len(subset) == 2 and set(subset) <= set(range(1, 10))
    trained = json.loads((tmp_path / "out/2-runs/seed-0/results/model/sub001/training_summary.json").read_text())
    assert trained["train_runs"] == subset and trained["test_runs"] == [10, 11, 12]
    for name in ("diffusion", "gaussian_var1"):
        row = summary["2"]["runs"][0][name]
        assert row["runs"] == subset and row["n_synthetic"] > 0
        assert abs(row["gain"] - (row["augmented"] - row["real"])) < 1e-12
    assert summary["2"]["runs"][0]["diffusion"]["real"] == summary["2"]["runs"][0]["gaussian_var1"]["real"]
    # the shrinkage LDA is trained on the same real runs and scored on the same held-out volumes
    assert 0 < summary["2"]["runs"][0]["shrinkage_lda_real_only"] <= 1
    assert summary["2"]["shrinkage_lda_real_only"]["values"] == [summary["2"]["runs"][0]["shrinkage_lda_real_only"]]
    assert (tmp_path / "out/learning_curve.png").stat().st_size > 0
