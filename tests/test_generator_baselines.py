"""The classical generator (category means + voxelwise AR(1) with Ledoit-Wolf innovations) on a
known process, and beside the model in fidelity.json."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.analysis.fidelity import evaluate_fidelity
from modalmerge.analysis.generator_baselines import LinearGaussianGenerator, component_temporal_correlation
from modalmerge.data.dataset import PreparedData
from test_fidelity import as_synthetic


def known_process(n_runs=6, length=200, n_voxels=12, seed=0):
    """Two labels with known means, a voxelwise AR(1) residual with known coefficients and a known,
    spatially correlated innovation covariance."""
    rng = np.random.default_rng(seed)
    phi = np.linspace(0.2, 0.8, n_voxels)
    distance = np.abs(np.subtract.outer(np.arange(n_voxels), np.arange(n_voxels)))
    covariance = 0.5 * np.exp(-distance / 3.0)
    means = {0: rng.normal(size=n_voxels), 1: rng.normal(size=n_voxels)}
    X, labels, runs = [], [], []
    for run in range(n_runs):
        y = (np.arange(length) // 20) % 2
        r = np.zeros(n_voxels)
        for t in range(length):
            r = phi * r + rng.multivariate_normal(np.zeros(n_voxels), covariance)
            X.append(means[int(y[t])] + r)
        labels.append(y)
        runs.append(np.full(length, run))
    return np.array(X), np.concatenate(labels), np.concatenate(runs), phi, covariance, means


def autocorrelation(series: np.ndarray, lag: int) -> np.ndarray:
    centred = series - series.mean(0)
    return (centred[lag:] * centred[:-lag]).sum(0) / (centred ** 2).sum(0)


def test_the_generator_recovers_a_known_ar1_process():
    X, labels, runs, phi, covariance, means = known_process()
    generator = LinearGaussianGenerator(seed=1).fit(X, labels, runs)
    # 1194 transitions: the standard error of an AR(1) coefficient is sqrt((1 - phi^2) / n) <= 0.03
    assert np.abs(generator.phi_ - phi).max() < 0.1
    assert np.linalg.norm(generator.covariance_ - covariance) / np.linalg.norm(covariance) < 0.15
    for label in (0, 1):
        # residual std up to sqrt(0.5 / (1 - 0.8^2)) = 1.18 over 600 volumes worth 67 independent ones at
        # phi 0.8: standard error 0.14, and 0.35 is 2.5 of them
        assert np.abs(generator.means_[label] - means[label]).max() < 0.35


def test_generated_runs_have_the_real_autocorrelation_and_covariance():
    X, labels, runs, phi, covariance, _ = known_process()
    generator = LinearGaussianGenerator(seed=2).fit(X, labels, runs)
    designs = [labels[runs == run] for run in range(6)]
    generated = generator.sample(designs)
    segments = np.repeat(np.arange(6), 200)
    residual = generated - np.stack([generator.means_[int(c)] for c in np.concatenate(designs)])
    for lag in (1, 2):
        measured = np.mean([autocorrelation(residual[segments == s], lag) for s in range(6)], axis=0)
        assert np.abs(measured - phi ** lag).max() < 0.12  # per voxel, 6 runs of 200 volumes
    stationary = covariance / (1 - np.outer(phi, phi))  # the residual covariance of the AR(1) process
    empirical = np.cov(residual.T)
    assert np.linalg.norm(empirical - stationary) / np.linalg.norm(stationary) < 0.2


def test_the_generator_samples_reproducibly_and_refuses_unknown_labels():
    X, labels, runs, *_ = known_process(n_runs=2, length=60)
    generator = LinearGaussianGenerator(seed=3).fit(X, labels, runs)
    assert np.array_equal(generator.sample([labels[:30]]), generator.sample([labels[:30]]))
    with pytest.raises(ValueError, match=r"labels \[5\] were not in the training data"):
        generator.sample([np.array([0, 5])])


def test_fidelity_json_holds_the_classical_generator_beside_the_model(prepared_slice):
    data = PreparedData.load(prepared_slice["volumes"], with_raw=True)
    test = data.is_test
    real = as_synthetic(data.X[test], data.label_ids[test], data.runs[test])
    results, _ = evaluate_fidelity(data, real, n_permutations=20)
    assert set(results["generator_baselines"]) == {"gaussian_var1", "gaussian_coloured"}
    real_lag1 = results["temporal_autocorrelation"]["heldout_real"]["lag1"]
    for name, baseline in results["generator_baselines"].items():
        for key in ("ssim", "connectivity_similarity", "temporal_autocorrelation", "c2st_accuracy", "c2st_rbf_accuracy",
                    "mmd", "tstr_accuracy", "global_std", "memorisation_ratio"):
            assert key in baseline, (name, key)
        # built to reproduce the real lag-1 autocorrelation and spread (measured 0.33 and 0.30 vs 0.32; 1.0 vs 1.0)
        assert baseline["temporal_autocorrelation"]["lag1"] == pytest.approx(real_lag1, abs=0.08), name
        assert baseline["global_std"] == pytest.approx(results["global_std"]["heldout_real"], rel=0.1), name
        assert baseline["memorisation_ratio"] > 0.9, name  # it draws new volumes, it does not copy
    # where the residual variance lies: real runs keep about 0.3 of it in the training runs' 10 strongest
    # within-category components (measured 0.30 held out), and the real runs scored as a set match that exactly
    spectrum = results["residual_spectrum"]
    assert spectrum["synthetic"] == pytest.approx(spectrum["heldout_real"]) and spectrum["heldout_real"]["leading_10_share"] > 0.2
    for name, baseline in results["generator_baselines"].items():  # measured 0.22 (AR(1)) and 0.28 (coloured)
        assert baseline["residual_spectrum"]["leading_10_share"] == pytest.approx(
            spectrum["heldout_real"]["leading_10_share"], abs=0.12), name
    # the coloured one has the slower decay of the data (lag 3: AR(1) 0.05, coloured 0.10, real 0.12)
    lag3 = {name: b["temporal_autocorrelation"]["lag3"] for name, b in results["generator_baselines"].items()}
    assert lag3["gaussian_coloured"] > lag3["gaussian_var1"] + 0.02


def test_real_runs_of_the_synthetic_size_are_scored_like_a_generator(prepared_slice):
    """The same-size real reference: disjoint groups of training runs (never a test run), as many runs
    as the synthetic set, each scored against the held-out runs by the generators' own numbers, with
    memorisation measured against the other training runs (new real data: ratio near 1)."""
    data = PreparedData.load(prepared_slice["volumes"], with_raw=True)
    test = data.is_test
    real = as_synthetic(data.X[test], data.label_ids[test], data.runs[test])  # three synthetic runs
    results, _ = evaluate_fidelity(data, real, n_permutations=20)
    reference = results["real_runs_reference"]
    assert reference["runs_per_group"] == 3
    assert reference["groups"] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert len(reference["per_group"]) == 3
    baseline = results["generator_baselines"]["gaussian_var1"]
    for group in reference["per_group"]:
        assert set(group) == set(baseline)  # every number a generator gets
        assert 0.8 < group["memorisation_ratio"] < 1.25
        assert group["global_std"] == pytest.approx(1.0, abs=0.05)  # z-scored real runs
        # real runs carry real temporal structure: lag-1 autocorrelation as in the held-out runs (0.32-0.38 measured)
        assert group["temporal_autocorrelation"]["lag1"] == pytest.approx(
            results["temporal_autocorrelation"]["heldout_real"]["lag1"], abs=0.1)
    # any groups may be asked for (bench/real_triples.py scores all 84 sets of three): a group scored on
    # its own gets the numbers it got among the disjoint ones, a mixed group its own
    from modalmerge.analysis.fidelity import heldout_reference, real_runs_reference
    chosen = real_runs_reference(data, heldout_reference(data, 0, 20), 3, groups=[[4, 5, 6], [1, 5, 9]])
    assert chosen["groups"] == [[4, 5, 6], [1, 5, 9]]
    assert chosen["per_group"][0] == reference["per_group"][1]
    assert chosen["per_group"][1]["tstr_accuracy"] != reference["per_group"][1]["tstr_accuracy"]
    # a synthetic set of more runs than the training data has: no reference, and the note says why
    empty = real_runs_reference(data, {}, n_runs=len(data.train_runs) + 1)
    assert empty["groups"] == [] and "fewer than" in empty["note"]


def test_synthetic_runs_are_preprocessed_like_real_runs(prepared_slice):
    """preprocessed_like_real gives a synthetic run the constraint mask-and-normalize left on every real
    run (no linear trend, each voxel's mean 0 and sample sd 1 over the run), leaves real runs as they are,
    and in fidelity.json a set of real runs scores the same with and without it."""
    from modalmerge.analysis.fidelity_reference import preprocessed_like_real
    data = PreparedData.load(prepared_slice["volumes"])
    test, mask = data.is_test, data.mask
    real_runs = data.X[test]
    assert np.allclose(preprocessed_like_real(real_runs, data.runs[test], mask), real_runs, atol=1e-4)
    # a set of two runs with an offset, a scale and a trend of its own per voxel
    rng = np.random.default_rng(0)
    segments = np.repeat([0, 1], 60)
    X = np.zeros((120, *mask.shape), np.float32)
    time = np.tile(np.arange(60), 2)[:, None]
    X[:, mask] = rng.normal(size=(120, mask.sum())) * rng.uniform(0.5, 2, mask.sum()) + 3 + 0.05 * time
    out = preprocessed_like_real(X, segments, mask)
    for run in (0, 1):
        A = out[segments == run][:, mask]
        assert np.abs(A.mean(0)).max() < 1e-4 and np.abs(A.std(0, ddof=1) - 1).max() < 1e-4
        assert abs(np.corrcoef(np.arange(60), A.mean(1))[0, 1]) < 1e-3  # the trend is gone
    assert np.array_equal(out[:, ~mask], X[:, ~mask])
    demeaned = preprocessed_like_real(X, segments, mask, detrend=False, standardize="psc")
    assert np.allclose(demeaned[segments == 0][:, mask].mean(0), 0, atol=1e-4)
    assert np.allclose(demeaned[segments == 0][:, mask].std(0), X[segments == 0][:, mask].std(0), rtol=1e-4)  # no rescaling
    with pytest.raises(ValueError, match="prep.standardize"):
        preprocessed_like_real(X, segments, mask, standardize="zscore")
    # the held-out runs scored as a synthetic set: the constraint is already there, nothing moves
    results, _ = evaluate_fidelity(data, as_synthetic(real_runs, data.label_ids[test], data.runs[test]), n_permutations=20)
    found = results["preprocessed_like_real"]
    assert found["preprocessing"] == {"detrend": True, "standardize": "zscore_sample"}
    for key in ("connectivity_similarity", "c2st_rbf_accuracy", "tstr_accuracy"):
        assert found["synthetic"][key] == pytest.approx(results[key], abs=1e-3), key
    # a classical generator's runs do move: its run means are free, the real runs' are 0
    assert set(found["generator_baselines"]) == {"gaussian_var1", "gaussian_coloured"}
    var1 = results["generator_baselines"]["gaussian_var1"]
    assert found["generator_baselines"]["gaussian_var1"]["c2st_accuracy"] < var1["c2st_accuracy"] - 0.2


def test_innovations_are_white_and_invert_exactly():
    """The hybrid generator's split: the linear part removed leaves standardised innovations without
    the process's autocorrelation, and putting it back rebuilds the volumes."""
    X, labels, runs, phi, _, _ = known_process()
    generator = LinearGaussianGenerator(seed=4).fit(X, labels, runs)
    z = generator.innovations(X, labels, runs)
    assert z.shape == X.shape
    assert np.abs(z.std(0) - 1).max() < 0.1
    lag1 = np.mean([autocorrelation(z[runs == run], 1) for run in range(6)], axis=0)
    assert np.abs(lag1).max() < 0.1  # the data's own lag-1 autocorrelation reaches phi = 0.8
    assert np.abs(generator.from_innovations(z, labels, runs) - X).max() < 1e-4
    # runs are recursed apart: a run's first volume does not depend on the previous run
    first = np.flatnonzero(runs == 1)[0]
    shifted = z.copy()
    shifted[runs == 0] += 5
    assert np.allclose(generator.from_innovations(shifted, labels, runs)[first:], X[first:], atol=1e-4)
    with pytest.raises(ValueError, match=r"labels \[7\]"):
        generator.innovations(X[:2], np.array([0, 7]), np.zeros(2))


def test_whitened_innovations_lose_the_spatial_correlation_and_invert_exactly():
    """``whiten=True``: the known process's neighbouring voxels' innovations correlate at exp(-1/3) =
    0.72; whitened they are uncorrelated unit-variance series, each still mostly its own voxel (ZCA),
    and colouring them back rebuilds the volumes."""
    X, labels, runs, _, _, _ = known_process()
    generator = LinearGaussianGenerator(seed=4).fit(X, labels, runs)
    z = generator.innovations(X, labels, runs)
    w = generator.innovations(X, labels, runs, whiten=True)
    off = ~np.eye(X.shape[1], dtype=bool)
    assert np.corrcoef(z.T)[off].max() > 0.6
    assert np.abs(np.corrcoef(w.T)[off]).max() < 0.1
    assert np.abs(w.std(0) - 1).max() < 0.1
    # ZCA keeps each whitened series closest to its own voxel's standardised innovation
    agreement = np.corrcoef(w.T, z.T)[:X.shape[1], X.shape[1]:]
    assert np.all(agreement.argmax(1) == np.arange(X.shape[1]))
    assert np.abs(generator.from_innovations(w, labels, runs, whiten=True) - X).max() < 1e-4
    # the two options are not interchangeable
    assert np.abs(generator.from_innovations(w, labels, runs) - X).max() > 0.1


def test_component_temporal_correlation_recovers_each_components_own_lags():
    """Volumes = label means + two components along a rotated basis: one AR(1) with coefficient 0.7, one
    white. The per-component Toeplitz correlation (the sampler's posterior_frames: correlated prior) finds
    lag 1 = 0.7 and lag 2 = 0.49 for the first, about 0 for the second, whatever the label means."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    X, labels, runs = [], [], []
    for run in range(6):
        slow = np.zeros(300)
        for t in range(1, 300):
            slow[t] = 0.7 * slow[t - 1] + rng.normal()
        y = (np.arange(300) // 25) % 3
        X.append(np.stack([slow, rng.normal(size=300)], 1) @ basis.T + 5.0 * np.array([[0, 0], [1, -2], [3, 1]])[y])
        labels.append(y)
        runs.append(np.full(300, run))
    X, labels, runs = np.concatenate(X), np.concatenate(labels), np.concatenate(runs)
    temporal = component_temporal_correlation(X, labels, runs, basis, 4)
    assert temporal.shape == (2, 4, 4) and np.allclose(temporal[:, range(4), range(4)], 1)
    assert abs(temporal[0, 0, 1] - 0.7) < 0.05 and abs(temporal[0, 1, 3] - 0.49) < 0.06 and abs(temporal[1, 0, 1]) < 0.06
    assert np.allclose(temporal, np.transpose(temporal, (0, 2, 1))) and np.linalg.eigvalsh(temporal).min() > -1e-9
    with pytest.raises(ValueError, match="fewer than the clip length 400"):
        component_temporal_correlation(X, labels, runs, basis, 400)


def test_the_residual_spectrum_finds_where_the_variance_lies():
    """A set whose residual lies along the first basis vector has all of it in the leading component; an
    isotropic one has k / n_voxels in the leading k; the label means are removed first."""
    from modalmerge.analysis.fidelity_metrics import residual_spectrum
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.normal(size=(60, 60)))
    labels = np.repeat([0, 1, 2], 400)
    means = 10 * rng.normal(size=(3, 60))[labels]
    along_first = means + rng.normal(size=(1200, 1)) * basis[:, 0]
    assert residual_spectrum(along_first, labels, basis)["leading_10_share"] == pytest.approx(1.0)
    isotropic = residual_spectrum(means + rng.normal(size=(1200, 60)), labels, basis)
    assert isotropic["leading_10_share"] == pytest.approx(10 / 60, abs=0.02)
    assert isotropic["leading_50_share"] == pytest.approx(50 / 60, abs=0.02)
    assert isotropic["total_variance"] == pytest.approx(60, rel=0.05)
