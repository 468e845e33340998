"""Schedules and samplers: closed forms, DDPM/DDIM equivalence, and output statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalmerge.diffusion.posterior_noise import GaussianPrior
from modalmerge.diffusion.schedulers import DDIMScheduler, DDPMScheduler, Scheduler, make_sampler


def test_linear_schedule_matches_ddpm():
    scheduler = Scheduler(1000, "linear")
    assert scheduler.betas[0].item() == pytest.approx(1e-4)
    assert scheduler.betas[-1].item() == pytest.approx(0.02)
    assert scheduler.alphas_cumprod[-1].item() == pytest.approx(math.prod(1 - b for b in scheduler.betas.tolist()), rel=1e-9)


def test_forward_process_matches_its_closed_form():
    scheduler = Scheduler(1000, "cosine")
    generator = torch.Generator().manual_seed(0)
    x0 = torch.linspace(-2, 2, 5)
    for t in (0, 250, 999):
        noise = torch.randn(200_000, 5, generator=generator)
        x_t = scheduler.add_noise(x0.expand(200_000, 5), noise, torch.full((200_000,), t))
        abar = scheduler.alphas_cumprod[t].item()
        assert torch.allclose(x_t.mean(0), math.sqrt(abar) * x0, atol=0.01)
        assert torch.allclose(x_t.var(0), torch.full((5,), 1 - abar), atol=0.01)


def test_v_target_and_x0_recovery_are_consistent():
    scheduler = Scheduler(1000, "linear", prediction_type="v", clip_sample=None)
    x0, noise = torch.randn(4, 3), torch.randn(4, 3)
    t = torch.tensor([5, 100, 500, 990])
    x_t = scheduler.add_noise(x0, noise, t)
    pred_x0, pred_eps = scheduler.predict_x0_and_eps(scheduler.target(x0, noise, t), t, x_t)
    assert torch.allclose(pred_x0, x0, atol=1e-4) and torch.allclose(pred_eps, noise, atol=1e-3)


def oracle_eps(scheduler: Scheduler, data_std: float):
    """The exact E[eps | x_t] when x_0 ~ N(0, data_std^2 I): a known-answer denoiser."""
    def predict(x_t: torch.Tensor, t: int) -> torch.Tensor:
        abar = scheduler.alphas_cumprod[t].item()
        return math.sqrt(1 - abar) * x_t / (abar * data_std ** 2 + 1 - abar)
    return predict


def run_sampler(sampler: Scheduler, data_std: float, n: int = 4000, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    predict = oracle_eps(sampler, data_std)
    x = torch.randn(n, 4, generator=generator)
    for t in sampler.timesteps.tolist():
        x, _ = sampler.step(predict(x, t), t, x, generator)
    return x


@pytest.mark.parametrize("steps", [100, 50, 25])
@pytest.mark.parametrize("data_std", [1.0, 0.5])
def test_deterministic_ddim_matches_its_exact_chain(steps, data_std):
    """DDIM at eta 0 against the exact variance of its discretised chain (see chain_variance): the ODE
    steps shrink the variance a little (std ratio 0.95 at 50 steps), and the sampler must show exactly
    that much. 3 % is over five standard errors of a std from 16,000 draws."""
    sampler = make_sampler("ddim", {"n_train_steps": 1000, "schedule": "linear"}, steps, eta=0.0)
    samples = run_sampler(sampler, data_std)
    assert abs(samples.mean().item()) < 5 * data_std / math.sqrt(samples.numel())
    assert samples.std().item() == pytest.approx(math.sqrt(chain_variance(sampler, data_std)), rel=0.03)


def test_ddpm_reproduces_the_data_std():
    """Ancestral sampling with all 1000 steps: the chain's std is the data's (within 1 %, see the
    chain test), and the samples show it within five standard errors."""
    for data_std in (1.0, 0.5):
        samples = run_sampler(make_sampler("ddpm", {"n_train_steps": 1000, "schedule": "linear"}), data_std)
        assert samples.std().item() == pytest.approx(data_std, rel=0.03)


def test_ddim_with_all_steps_and_eta_one_is_ddpm():
    ddpm = DDPMScheduler(1000)
    ddim = DDIMScheduler(1000, eta=1.0)
    ddim.set_timesteps(1000)
    assert torch.equal(ddpm.timesteps, ddim.timesteps)
    a, b = run_sampler(ddpm, 0.7, n=500, seed=3), run_sampler(ddim, 0.7, n=500, seed=3)
    assert torch.allclose(a, b, atol=1e-3)


def test_clipping_bounds_the_predicted_x0():
    scheduler = Scheduler(1000, clip_sample=5.0)
    x_t = torch.full((1, 3), 50.0)
    x0, _ = scheduler.predict_x0_and_eps(torch.zeros(1, 3), torch.tensor([10]), x_t)
    assert x0.abs().max().item() == pytest.approx(5.0)


@pytest.mark.parametrize("kwargs,message", [
    ({"schedule": "quadratic"}, "schedule must be one of linear, cosine"),
    ({"prediction_type": "x0"}, "prediction_type must be one of epsilon, v"),
])
def test_option_strings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Scheduler(1000, **kwargs)


def test_ddim_step_count_is_checked():
    with pytest.raises(ValueError, match="DDIM steps must be between 1 and 1000"):
        DDIMScheduler(1000).set_timesteps(2000)


def chain_variance(sampler: DDIMScheduler, data_std: float) -> float:
    """Exact output variance of DDIM with the oracle denoiser on N(0, data_std^2) data.

    With that denoiser every step is linear, x_prev = a_t x_t + sigma_t z, so the variance follows
    v_prev = a_t^2 v_t + sigma_t^2 from v_T = 1: the discretised chain's own answer, not the data's.
    """
    abar = sampler.alphas_cumprod.double()
    variance = 1.0
    steps = sampler.timesteps.tolist()
    for i, t in enumerate(steps):
        prev = steps[i + 1] if i + 1 < len(steps) else -1
        ab_t, ab_p = abar[t].item(), abar[prev].item() if prev >= 0 else 1.0
        c = math.sqrt(1 - ab_t) / (ab_t * data_std ** 2 + 1 - ab_t)          # eps_hat = c x_t
        x0_coefficient = (1 - math.sqrt(1 - ab_t) * c) / math.sqrt(ab_t)     # x0_hat = x0_coefficient x_t
        if getattr(sampler, "variance", "small") == "large":  # posterior mean, then noise of variance beta
            beta = 1 - ab_t / ab_p
            a = math.sqrt(ab_p) * beta / (1 - ab_t) * x0_coefficient + math.sqrt(1 - beta) * (1 - ab_p) / (1 - ab_t)
            sigma = math.sqrt(beta) if prev >= 0 else 0.0
        else:
            sigma = sampler.eta * math.sqrt((1 - ab_p) / (1 - ab_t) * (1 - ab_t / ab_p))
            a = math.sqrt(ab_p) * x0_coefficient + math.sqrt(max(1 - ab_p - sigma ** 2, 0.0)) * c
        variance = a ** 2 * variance + sigma ** 2
    return variance


@pytest.mark.parametrize("data_std", [1.0, 0.5])
@pytest.mark.parametrize("steps", [50, 1000])
def test_the_pipelines_sampler_ddim_eta_one_matches_its_exact_chain(data_std, steps):
    """The sampler the pipeline uses (DDIM, eta 1, 50 steps) against the exact variance of its chain.

    16,000 draws estimate a std to 1/sqrt(2 n) = 0.56 % (one standard error); 3 % is over five.
    A wrong sigma, a missing noise term or a wrong x0 formula moves the std by far more.
    """
    sampler = make_sampler("ddim", {"n_train_steps": 1000, "schedule": "linear"}, steps, eta=1.0)
    samples = run_sampler(sampler, data_std, n=4000)
    expected_std = math.sqrt(chain_variance(sampler, data_std))
    assert abs(samples.mean().item()) < 5 * data_std / math.sqrt(samples.numel())  # mean 0 within 5 standard errors
    assert samples.std().item() == pytest.approx(expected_std, rel=0.03)
    if steps == 1000:  # the fine chain is DDPM: it reproduces the data's std
        assert expected_std == pytest.approx(data_std, rel=0.01)


def test_fifty_ancestral_steps_under_disperse_even_with_an_exact_denoiser():
    """A property of the pipeline's sampler worth knowing: with 50 DDIM steps at eta 1, even the exact
    denoiser yields std 0.92 of unit-variance data (0.89 of std-0.5 data): part of the synthetic
    data's missing variance is the sampler's, not the model's."""
    sampler = make_sampler("ddim", {"n_train_steps": 1000, "schedule": "linear"}, 50, eta=1.0)
    assert 0.90 < math.sqrt(chain_variance(sampler, 1.0)) < 0.94


@pytest.mark.parametrize("data_std", [1.0, 0.5, 2.0])
def test_large_variance_matches_its_exact_chain_and_keeps_the_spread_of_gaussian_data(data_std):
    """sample.variance large: ancestral steps with variance beta over each stride. Its samples match
    the exact variance of its chain (16,000 draws: one standard error of a std 0.56 %, 3 % is over
    five), and with 50 steps it keeps the std of Gaussian data far better than eta 1 (0.997 against
    0.926 of unit data; std 0.5: 1.023 against 0.888; std 2: 0.976 against 0.943)."""
    sampler = make_sampler("ddim", {"n_train_steps": 1000, "schedule": "linear"}, 50, eta=1.0, variance="large")
    samples = run_sampler(sampler, data_std, n=4000)
    expected_std = math.sqrt(chain_variance(sampler, data_std))
    assert samples.std().item() == pytest.approx(expected_std, rel=0.03)
    small = math.sqrt(chain_variance(make_sampler("ddim", {"n_train_steps": 1000, "schedule": "linear"}, 50, eta=1.0), data_std))
    assert abs(expected_std / data_std - 1) < 0.03 < abs(small / data_std - 1)
    if data_std == 1.0:  # unit-Gaussian data: the chain is exact, whatever the stride
        assert expected_std == pytest.approx(1.0, abs=0.005)


def test_large_variance_with_all_steps_is_ddpm_with_beta_and_needs_eta_one():
    config = {"n_train_steps": 1000, "schedule": "linear"}
    ddim = make_sampler("ddim", config, 1000, eta=1.0, variance="large")
    ddpm = make_sampler("ddpm", config, variance="large")
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    out = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    for t in (999, 500, 1, 0):
        a, _ = ddim.step(out, t, x, torch.Generator().manual_seed(2))
        b, _ = ddpm.step(out, t, x, torch.Generator().manual_seed(2))
        assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="eta 1"):
        make_sampler("ddim", config, 50, eta=0.0, variance="large")
    with pytest.raises(ValueError, match="variance must be one of"):
        make_sampler("ddim", config, 50, variance="huge")


def correlated_gaussian(seed: int = 0, n_voxels: int = 6):
    """A data covariance with correlated voxels and variances 0.05-4: what fMRI's noise looks like to a sampler."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(n_voxels, n_voxels)))
    return (rotation * np.geomspace(0.05, 4, n_voxels)) @ rotation.T


def run_correlated(sampler: DDIMScheduler, covariance: np.ndarray, n: int = 6000, seed: int = 0) -> np.ndarray:
    """Samples of the exact denoiser of N(0, covariance) data, E[eps | x_t] = b (a^2 S + b^2 I)^-1 x_t,
    shaped as clips of one frame on a (V, 1, 1) grid."""
    return run_denoiser(sampler, covariance, 1, n, seed)


@pytest.mark.parametrize("seed", [0, 1])
def test_the_gaussian_posterior_variance_samples_correlated_gaussian_data_exactly(seed):
    """sample.variance gaussian_posterior adds, at each of DDIM's 50 steps, the part of the exact reverse
    step that plugging in the guess of x0 leaves out (c^2 times the posterior covariance of x0). With the
    exact denoiser of correlated Gaussian data and that data's covariance, the samples have the data's
    covariance (6000 draws; measured over covariance seeds 0-3: relative error of the matrix 0.014-0.023,
    total variance 0.99-1.01 of the data's), where the default (small) keeps 0.86-0.87 of the total
    variance (error 0.12-0.13) and the large variance 0.96-0.97 (error 0.05-0.06)."""
    covariance = correlated_gaussian(seed)
    config = {"n_train_steps": 1000, "schedule": "linear", "clip_sample": None}
    posterior = make_sampler("ddim", config, 50, eta=1.0, variance="gaussian_posterior")
    posterior.set_gaussian_prior(np.ones((len(covariance), 1, 1), bool), covariance)
    found = np.cov(run_correlated(posterior, covariance).T)
    assert np.linalg.norm(found - covariance) / np.linalg.norm(covariance) < 0.06
    # and in the data's own metric, where the small-variance directions count as much as the large ones:
    # measured 0.029-0.032; the same total noise drawn white (the mean eigenvalue in every direction)
    # gives 0.114-0.116, so this is what checks that the noise is shaped like the data
    values, basis = np.linalg.eigh(covariance)
    root = (basis / np.sqrt(values)) @ basis.T
    assert np.linalg.norm(root @ found @ root - np.eye(len(covariance))) / np.sqrt(len(covariance)) < 0.06
    total = np.trace(covariance)
    small = np.trace(np.cov(run_correlated(make_sampler("ddim", config, 50, eta=1.0), covariance).T))
    large = np.trace(np.cov(run_correlated(make_sampler("ddim", config, 50, eta=1.0, variance="large"), covariance).T))
    assert small < 0.92 * total and abs(large / total - 1) > 0.025 and abs(np.trace(found) / total - 1) < 0.02


def test_the_gaussian_posterior_variance_needs_its_prior_and_eta_one():
    config = {"n_train_steps": 1000, "schedule": "linear"}
    sampler = make_sampler("ddim", config, 50, eta=1.0, variance="gaussian_posterior")
    x = torch.zeros(2, 1, 3, 1, 1)
    with pytest.raises(ValueError, match="set_gaussian_prior"):
        sampler.step(x, 999, x)
    with pytest.raises(ValueError, match="mask has 3 voxels"):
        sampler.set_gaussian_prior(np.ones((3, 1, 1), bool), np.eye(4))
    with pytest.raises(ValueError, match="eta 1"):
        make_sampler("ddim", config, 50, eta=0.0, variance="gaussian_posterior")


def spacetime_prior(seed: int, n_frames: int = 4):
    """Clips whose spatial components have their own temporal correlation: the strongest is slow (AR(1), lag-1
    0.8), one is fast, the rest white, as in fMRI. Returns (spatial covariance, its eigenvectors, temporal
    correlation per component, the whole space-time covariance over the frame-major flattening)."""
    spatial = correlated_gaussian(seed, n_voxels=5)
    values, basis = np.linalg.eigh(spatial)
    lag1 = np.array([0.0, 0.0, 0.3, -0.2, 0.8])
    temporal = lag1[:, None, None] ** np.abs(np.subtract.outer(np.arange(n_frames), np.arange(n_frames)))
    full = sum(values[j] * np.kron(temporal[j], np.outer(basis[:, j], basis[:, j])) for j in range(len(values)))
    return spatial, basis, temporal, full


@pytest.mark.parametrize("seed", [0, 1])
def test_correlated_frames_draw_the_space_time_posterior_of_x0(seed):
    """posterior_frames correlated: the noise is c^2 times the posterior covariance of x0 given x_t under the
    whole space-time covariance, (Σ^-1 + snr I)^-1, not only its spatial part (40000 draws; measured over seeds
    0-3: relative error 0.017-0.021; the spatial prior with independent frames: 0.40-0.41)."""
    spatial, basis, temporal, full = spacetime_prior(seed)
    mask, c, snr = np.ones((5, 1, 1), bool), 0.9, 0.7
    target = c ** 2 * np.linalg.inv(np.linalg.inv(full) + snr * np.eye(len(full)))
    for prior, bound in ((GaussianPrior(mask, spatial, temporal, basis), lambda e: e < 0.04),
                         (GaussianPrior(mask, spatial), lambda e: e > 0.3)):
        noise = prior.posterior_noise(torch.zeros(40000, 4, 5, 1, 1, dtype=torch.float64), c, snr,
                                      torch.Generator().manual_seed(seed))
        assert bound(np.linalg.norm(np.cov(noise.reshape(40000, -1).numpy().T) - target) / np.linalg.norm(target))


def run_denoiser(sampler: DDIMScheduler, covariance: np.ndarray, n_frames: int, n: int = 6000, seed: int = 0):
    """Samples (n, T * V) of the exact denoiser of N(0, covariance) clips of ``n_frames`` frames on a (V, 1, 1) grid
    (``covariance`` over the frame-major flattening)."""
    generator = torch.Generator().manual_seed(seed)
    S = torch.as_tensor(covariance, dtype=torch.float64)
    x = torch.randn(n, n_frames, len(S) // n_frames, 1, 1, generator=generator, dtype=torch.float64)
    for t in sampler.timesteps.tolist():
        abar = sampler.alphas_cumprod[t].item()
        system = abar * S + (1 - abar) * torch.eye(len(S), dtype=torch.float64)
        eps = math.sqrt(1 - abar) * torch.linalg.solve(system, x.reshape(n, -1).T).T.reshape(x.shape)
        x, _ = sampler.step(eps, t, x, generator)
    return x.reshape(n, -1).numpy()


def test_correlated_frames_sample_space_time_gaussian_data_and_cannot_give_a_time_blind_denoiser_its_lags():
    """With the exact denoiser of the space-time Gaussian the samples have its covariance (in the data's own
    metric: measured 0.060-0.068 over seeds 0-3, the sampling error of 6000 draws in 20 dimensions; small
    variance 0.23). With a denoiser that is exact for each frame but blind to time (as a network without
    temporal modelling), the slow component's lag-1 correlation stays near 0 (measured 0.01-0.035 against
    0.8): the temporally correlated noise does not make up for a network that does not model time."""
    spatial, basis, temporal, full = spacetime_prior(0)
    config = {"n_train_steps": 1000, "schedule": "linear", "clip_sample": None}
    sampler = make_sampler("ddim", config, 50, eta=1.0, variance="gaussian_posterior")
    sampler.set_gaussian_prior(np.ones((5, 1, 1), bool), spatial, temporal, basis)
    values, vectors = np.linalg.eigh(full)
    root = (vectors / np.sqrt(values)) @ vectors.T
    found = np.cov(run_denoiser(sampler, full, 4).T)
    assert np.linalg.norm(root @ found @ root - np.eye(len(full))) / np.sqrt(len(full)) < 0.09
    slow_frames = np.kron(np.eye(4), basis[:, -1:])
    slow = slow_frames.T @ found @ slow_frames
    assert abs(np.diag(slow, 1).mean() / np.diag(slow).mean() - 0.8) < 0.03
    blind = slow_frames.T @ np.cov(run_denoiser(sampler, np.kron(np.eye(4), spatial), 4).T) @ slow_frames
    assert np.diag(blind, 1).mean() / np.diag(blind).mean() < 0.1


def test_a_temporal_prior_needs_its_basis_and_clip_length():
    config = {"n_train_steps": 1000, "schedule": "linear"}
    sampler = make_sampler("ddim", config, 50, eta=1.0, variance="gaussian_posterior")
    mask, temporal = np.ones((3, 1, 1), bool), np.tile(np.eye(4), (3, 1, 1))
    with pytest.raises(ValueError, match="pass basis="):
        sampler.set_gaussian_prior(mask, np.eye(3), temporal)
    with pytest.raises(ValueError, match="orthonormal"):
        sampler.set_gaussian_prior(mask, np.eye(3), temporal, 2 * np.eye(3))
    sampler.set_gaussian_prior(mask, np.eye(3), temporal, np.eye(3))
    x = torch.zeros(2, 5, 3, 1, 1)
    with pytest.raises(ValueError, match="clips of 4 frames; got 5"):
        sampler.step(x, 999, x)
