"""sample.residual_dynamics coloured: the training runs' residual autocorrelation given to sampled runs
afterwards, on a known process (components of known lags along a rotated basis, label means)."""

from __future__ import annotations

import numpy as np
import pytest

from modalmerge.analysis.residual_dynamics import ResidualColouring

PHI = np.array([0.7, 0.4, 0.0])  # each component's AR(1) coefficient: slow, medium, white
SCALE = np.array([2.0, 1.5, 1.0])  # each component's stationary std
MEANS = 3.0 * np.array([[0, 0, 0], [1, -2, 0.5], [2, 1, -1]])


def known_process(n_runs=8, length=240, seed=0):
    """Volumes (3 voxels) = label mean + three AR(1) components along a rotated basis."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(np.random.default_rng(99).normal(size=(3, 3)))
    X, labels, runs = [], [], []
    for run in range(n_runs):
        z = np.zeros((length, 3))
        z[0] = rng.normal(size=3)
        for t in range(1, length):
            z[t] = PHI * z[t - 1] + np.sqrt(1 - PHI ** 2) * rng.normal(size=3)
        y = (np.arange(length) // 12) % 3
        X.append((z * SCALE) @ basis.T + MEANS[y])
        labels.append(y)
        runs.append(np.full(length, run))
    return np.concatenate(X), np.concatenate(labels), np.concatenate(runs), basis


def time_blind_runs(basis, designs, seed):
    """What a generator that is right about single volumes and blind to time gives: each volume drawn
    independently (the right mean and spatial covariance), runs stitched from clips of 8."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(len(y), 3)) * SCALE) @ basis.T + MEANS[y] for y in designs]


def component_lag(runs, labels, basis, lag):
    values = []
    for volumes, y in zip(runs, labels):
        z = (volumes - MEANS[y]) @ basis
        z = z - z.mean(0)
        values.append((z[lag:] * z[:-lag]).sum(0) / (z ** 2).sum(0))
    return np.mean(values, axis=0)


def test_colouring_gives_a_time_blind_generators_runs_each_components_lags_and_keeps_the_rest():
    X, labels, runs, basis = known_process()
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    designs = [labels[runs == r % 8] for r in range(24)]
    blind = time_blind_runs(basis, designs, seed=1)
    coloured = colouring.colour(blind, designs)
    assert np.abs(component_lag(blind, designs, basis, 1)).max() < 0.03  # the input has no lags
    fitted = colouring.autocorrelation_[np.argsort(colouring.variances_)[::-1]]  # in the order of PHI
    for lag in (1, 2, 3):  # 24 runs of 240 volumes: what the fit promises, within 0.05 (measured <= 0.04)
        measured = component_lag(coloured, designs, basis, lag)
        assert np.abs(measured - fitted[:, lag]).max() < 0.05, lag
    assert np.abs(component_lag(coloured, designs, basis, 1) - PHI).max() < 0.08  # and the fit is near the truth
    # spatial covariance and label means kept: colouring mixes a component only with itself, in time
    residual = np.concatenate([c - MEANS[y] for c, y in zip(coloured, designs)])
    truth = (basis * SCALE ** 2) @ basis.T
    assert np.linalg.norm(np.cov(residual.T) - truth) / np.linalg.norm(truth) < 0.15
    for label in range(3):  # the generator's own label means are put back (the coloured residual's own mean
        # per label is not exactly 0: a volume's filter reaches its neighbours of other labels)
        assert np.allclose(np.concatenate(coloured)[np.concatenate(designs) == label].mean(0),
                           np.concatenate(blind)[np.concatenate(designs) == label].mean(0), atol=0.05)
    assert abs(colouring.residual_lag1(blind, designs)) < 0.03
    assert colouring.residual_lag1(coloured, designs) == pytest.approx(colouring.residual_lag1(
        [X[runs == r] for r in range(8)], [labels[runs == r] for r in range(8)]), abs=0.05)


def test_a_mean_offset_is_put_back_not_amplified():
    """A generator whose label means are off (a constant offset within blocks) keeps its own means: the
    offset is not coloured (a slow filter would multiply it by up to sqrt(1 + 2 sum of the lags))."""
    X, labels, runs, basis = known_process()
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    designs = [labels[runs == r % 8] for r in range(12)]
    offset = 2.0 * basis[:, 0]  # along the slow component
    blind = [run + offset for run in time_blind_runs(basis, designs, seed=4)]
    coloured = np.concatenate(colouring.colour(blind, designs))
    slow_mean = lambda volumes: (volumes @ basis[:, 0]).mean()
    assert slow_mean(coloured) == pytest.approx(slow_mean(np.concatenate(blind)), abs=0.05)  # about 2 + 0.3


def test_coloured_runs_have_no_discontinuity_at_clip_boundaries():
    """The generation issue's coherence test: the slow component's lag-1 correlation between the last
    volume of one clip of 8 and the first of the next equals that inside clips (0.7), where the stitched
    input of a time-blind generator has none anywhere."""
    X, labels, runs, basis = known_process()
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    designs = [labels[runs == r % 8] for r in range(48)]
    blind = time_blind_runs(basis, designs, seed=2)
    coloured = colouring.colour(blind, designs)
    boundary = (np.arange(239) % 8) == 7

    def lag1_at(runs_, where):
        slow = np.stack([((c - MEANS[y]) @ basis)[:, 0] for c, y in zip(runs_, designs)])
        slow = slow - slow.mean(1, keepdims=True)
        a, b = slow[:, :-1][:, where], slow[:, 1:][:, where]
        return (a * b).sum() / np.sqrt((a ** 2).sum() * (b ** 2).sum())

    at_boundary, inside = lag1_at(coloured, boundary), lag1_at(coloured, ~boundary)
    # 48 runs, 1392 boundary pairs: measured 0.66-0.71 over input seeds 0-7, inside 0.69-0.70
    assert at_boundary == pytest.approx(0.7, abs=0.06) and inside == pytest.approx(0.7, abs=0.03)
    assert abs(at_boundary - inside) < 0.06
    assert abs(lag1_at(blind, boundary)) < 0.1 and abs(lag1_at(blind, ~boundary)) < 0.05


def test_the_linear_part_alone_is_reproducible_and_has_the_known_lags():
    X, labels, runs, basis = known_process()
    designs = [labels[runs == r] for r in range(6)]
    colouring = ResidualColouring(max_lag=7, seed=3).fit(X, labels, runs)
    sampled = colouring.sample(designs)
    assert np.array_equal(sampled, colouring.sample(designs)) and sampled.dtype == np.float32
    pieces = np.split(sampled, np.cumsum([len(y) for y in designs])[:-1])
    assert np.abs(component_lag(pieces, designs, basis, 1) - PHI).max() < 0.07
    assert np.abs(colouring.autocorrelation_[np.argsort(colouring.variances_)[::-1], 1] - PHI).max() < 0.05
    roots = colouring.roots(30)
    assert roots.shape == (3, 30, 30) and np.allclose((roots ** 2).sum(2), 1)  # every volume keeps its variance
    # a truncated autocorrelation need not be positive definite (lag 1 0.9, nothing beyond: eigenvalues down to
    # 1 - 1.8 cos(pi / 32) < 0); negative eigenvalues are dropped and every volume still keeps its variance
    colouring.autocorrelation_ = np.array([[1.0, 0.9]] * 3)
    roots = colouring.roots(31)  # a length not computed before (roots are kept per length)
    assert np.isfinite(roots).all() and np.allclose((roots ** 2).sum(2), 1)
    assert np.diagonal(roots[0] @ roots[0].T, 1).mean() > 0.6  # still strongly correlated at lag 1


def test_colouring_refuses_unknown_labels_and_a_negative_lag():
    X, labels, runs, basis = known_process(n_runs=2, length=48)
    colouring = ResidualColouring(max_lag=3).fit(X, labels, runs)
    with pytest.raises(ValueError, match=r"labels \[7\] were not in the training data"):
        colouring.sample([np.array([0, 1, 7, 2])])
    with pytest.raises(ValueError, match="max_lag must be >= 0"):
        ResidualColouring(max_lag=-1).fit(X, labels, runs)


def test_matched_variance_gives_each_component_the_fitted_variance_before_colouring():
    """A generator that spreads its residual variance wrongly (0.5, 3 and 1 where the data have 2, 1.5 and
    1) keeps it with plain colouring; with variance="matched" each component gets the fitted variance and still
    the fitted lags, and the label means stay the generator's."""
    X, labels, runs, basis = known_process()
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    designs = [labels[runs == r % 8] for r in range(24)]
    rng = np.random.default_rng(5)
    wrong = [(rng.normal(size=(len(y), 3)) * np.array([0.5, 3.0, 1.0])) @ basis.T + MEANS[y] for y in designs]
    order = np.argsort(colouring.variances_)[::-1]  # fitted components in the order of PHI and SCALE

    def component_variance(runs_):
        return np.concatenate([(r - MEANS[y]) @ basis for r, y in zip(runs_, designs)]).var(0)

    plain = component_variance(colouring.colour(wrong, designs))
    matched_runs = colouring.colour(wrong, designs, variance="matched")
    matched = component_variance(matched_runs)
    assert plain[0] < 0.5 and plain[1] > 6  # 0.25 and 9 kept
    assert np.allclose(matched, colouring.variances_[order], rtol=0.1)  # 4, 2.25, 1 as fitted
    assert np.abs(component_lag(matched_runs, designs, basis, 1) - colouring.autocorrelation_[order, 1]).max() < 0.05
    for label in range(3):
        assert np.allclose(np.concatenate(matched_runs)[np.concatenate(designs) == label].mean(0),
                           np.concatenate(wrong)[np.concatenate(designs) == label].mean(0), atol=0.1)
    # redistributed: the fitted shares (4 : 2.25 : 1 as fitted) at the generator's own total (0.25 + 9 + 1)
    redistributed = component_variance(colouring.colour(wrong, designs, variance="redistributed"))
    assert redistributed.sum() == pytest.approx(plain.sum(), rel=0.1)
    assert np.allclose(redistributed / redistributed.sum(), colouring.variances_[order] / colouring.variances_.sum(), atol=0.03)
    with pytest.raises(ValueError, match="variance must be one of"):
        colouring.colour(wrong, designs, variance="doubled")


def test_the_residual_lag1_diagnostic_centres_each_run():
    """Runs white in time but each shifted by its own constant (a run offset, as z-scoring per run leaves in
    a pooled residual) have no lag: the stage's diagnostic must not read the offsets as slow signal."""
    X, labels, runs, basis = known_process()
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    designs = [labels[runs == r % 8] for r in range(12)]
    rng = np.random.default_rng(6)
    shifted = [run + 3.0 * rng.normal(size=3) for run in time_blind_runs(basis, designs, seed=7)]
    assert abs(colouring.residual_lag1(shifted, designs)) < 0.05


def test_whitening_first_keeps_a_generators_own_autocorrelation_from_compounding_with_the_fitted_one():
    """A generator whose residual is already slow (every component AR(1) with 0.5, right variances) gets more
    than the fitted lags and more than the fitted variance from colouring alone (the colouring assumes a white
    input); whitened first, it gets the fitted lags and, with variance="matched", the fitted variances."""
    X, labels, runs, basis = known_process()
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    designs = [labels[runs == r % 8] for r in range(24)]
    slow = known_process_with(designs, basis, phi=np.full(3, 0.5), seed=7)
    order = np.argsort(colouring.variances_)[::-1]
    fitted = colouring.autocorrelation_[order]

    def component_variance(runs_):
        return np.concatenate([(r - MEANS[y]) @ basis for r, y in zip(runs_, designs)]).var(0)

    compounded = colouring.colour(slow, designs, variance="matched")
    whitened = colouring.colour(slow, designs, variance="matched", whiten=True)
    assert component_lag(compounded, designs, basis, 1)[2] > 0.3  # the white component: 0.5 kept, not 0
    assert component_variance(compounded)[0] > 1.15 * colouring.variances_[order][0]  # the slow one inflated
    for lag in (1, 2, 3):
        assert np.abs(component_lag(whitened, designs, basis, lag) - fitted[:, lag]).max() < 0.05, lag
    assert np.allclose(component_variance(whitened), colouring.variances_[order], rtol=0.1)
    # matched_after: the same slow input, coloured, then each component scaled to the fitted variance: the
    # variances exactly, the lags those of colouring alone (compounded), the label means the generator's
    after = colouring.colour(slow, designs, variance="matched_after")
    assert np.allclose(component_variance(after), colouring.variances_[order], rtol=0.02)
    assert np.allclose(component_lag(after, designs, basis, 1), component_lag(compounded, designs, basis, 1), atol=0.02)
    for label in range(3):
        assert np.allclose(np.concatenate(after)[np.concatenate(designs) == label].mean(0),
                           np.concatenate(slow)[np.concatenate(designs) == label].mean(0), atol=0.3)
    # an input white in time is left as it was by the whitening (up to its estimation noise)
    blind = time_blind_runs(basis, designs, seed=1)
    assert np.allclose(np.concatenate(colouring.colour(blind, designs, whiten=True)),
                       np.concatenate(colouring.colour(blind, designs)), atol=0.35)


def known_process_with(designs, basis, phi, seed):
    """Runs along ``designs`` whose components are AR(1) with coefficients ``phi`` at the stationary std SCALE."""
    rng = np.random.default_rng(seed)
    out = []
    for y in designs:
        z = np.zeros((len(y), 3))
        z[0] = rng.normal(size=3)
        for t in range(1, len(y)):
            z[t] = phi * z[t - 1] + np.sqrt(1 - phi ** 2) * rng.normal(size=3)
        out.append((z * SCALE) @ basis.T + MEANS[y])
    return out


def with_run_offsets(run_volumes, designs, size=1.5):
    """Run r's label means shifted by an offset per label of its own (the same for runs r and r + 8), as real
    runs' block means differ from run to run."""
    offsets = size * np.random.default_rng(3).normal(size=(8, 3, 3))
    return [v + offsets[r % 8][y] for r, (v, y) in enumerate(zip(run_volumes, designs))]


def test_run_matched_gives_each_runs_own_residual_the_training_runs_and_keeps_each_runs_label_means():
    """Training runs whose label means differ from run to run: the pooled residual carries those differences,
    a run's residual around its own label means does not. run_matched scales a generator's run residuals (twice
    too large, around their own label means, which also differ from run to run) to the training runs' value of
    the same quantity and keeps each run's label means (here the training runs'), so each run's total variance comes
    out as the training runs'; matched, which gives the pooled value on top of the runs' own means, overshoots it."""
    X, labels, runs, basis = known_process()
    X = np.concatenate(with_run_offsets([X[runs == r] for r in range(8)], [labels[runs == r] for r in range(8)]))
    colouring = ResidualColouring(max_lag=7).fit(X, labels, runs)
    assert colouring.run_variances_.sum() == pytest.approx((SCALE ** 2).sum(), rel=0.1)  # 7.25: the offsets left out
    assert colouring.variances_.sum() > colouring.run_variances_.sum() + 4  # ~6.75 of offsets in the pooled residual
    designs = [labels[runs == r % 8] for r in range(24)]
    wide = [(v - MEANS[y]) * 2 + MEANS[y] for v, y in zip(time_blind_runs(basis, designs, seed=1), designs)]
    wide = with_run_offsets(wide, designs)  # each run's label means right
    matched = colouring.colour(wide, designs, variance="run_matched")

    def run_residual_variance(runs_):
        return np.concatenate([(r - np.stack([r[y == c].mean(0) for c in range(3)])[y]) @ colouring.basis_
                               for r, y in zip(runs_, designs)]).var(0)

    assert np.allclose(run_residual_variance(matched), colouring.run_variances_, rtol=0.1)
    for run, given, y in zip(matched, wide, designs):
        for label in range(3):  # each run's own label means put back (up to the colouring's leak across blocks)
            assert np.allclose(run[y == label].mean(0), given[y == label].mean(0), atol=0.35)

    def run_total(runs_):
        return np.mean([r.var(0).sum() for r in runs_])

    real = run_total([X[runs == r] for r in range(8)])
    assert run_total(matched) == pytest.approx(real, rel=0.1)
    assert run_total(colouring.colour(wide, designs, variance="matched")) > 1.2 * real  # 1.24
