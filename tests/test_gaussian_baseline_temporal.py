"""model.gaussian_baseline_temporal: the Gaussian baseline's exact denoiser solved over a clip's frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalmerge.analysis.diffusion_detector import untrained_control
from modalmerge.analysis.generator_baselines import component_temporal_correlation, within_category_covariance
from modalmerge.config import validate_config
from modalmerge.errors import ModalMergeInputError
from test_gaussian_baseline import CLASSES, GRID, T, fit, tiny


def toeplitz(phi: float) -> np.ndarray:
    """The correlation of an AR(1) process with coefficient ``phi`` over T frames."""
    return phi ** np.abs(np.subtract.outer(np.arange(T), np.arange(T)))


def known_spatiotemporal(mask, n_runs=6, run_length=240, seed=0):
    """Runs of volumes: block-designed category means plus a residual whose eigencomponents are AR(1)
    processes, slow for the strong components (phi 0.9) and white for the weak ones. Returns the volumes,
    labels, runs and the true covariance, basis and per-component temporal correlation."""
    rng = np.random.default_rng(seed)
    v = int(mask.sum())
    basis = np.linalg.qr(rng.normal(size=(v, v)))[0]
    values = np.geomspace(4.0, 0.05, v)
    phis = np.where(values > 0.5, 0.9, 0.0)
    means = rng.normal(scale=1.0, size=(CLASSES, v))
    X, labels, runs = [], [], []
    for run in range(n_runs):
        z = np.zeros((run_length, v))
        z[0] = rng.normal(size=v)
        for i in range(1, run_length):
            z[i] = phis * z[i - 1] + np.sqrt(1 - phis ** 2) * rng.normal(size=v)
        label = np.repeat(np.arange(run_length) // 12 % CLASSES, 1)
        X.append(means[label] + (z * np.sqrt(values)) @ basis.T)
        labels.append(label)
        runs.append(np.full(run_length, run))
    flat, labels, runs = np.concatenate(X), np.concatenate(labels), np.concatenate(runs)
    volumes = np.zeros((len(flat), *GRID))
    volumes[:, mask] = flat
    temporal = np.stack([toeplitz(phi) for phi in phis])
    return volumes, labels, runs, basis @ np.diag(values) @ basis.T, basis, temporal


def fit_temporal(network, volumes, labels, runs, mask):
    """The train stage's temporal fit, from the volumes alone."""
    X = volumes[:, mask]
    covariance = within_category_covariance(X, labels)
    basis = np.linalg.eigh(covariance)[1]
    return network.fit(volumes, labels, covariance, component_temporal_correlation(X, labels, runs, basis, T), basis)


def x0_estimate(diffusion, x_t, t):
    """The model's x0 estimate, its target inverted frame by frame (``t`` (B, T))."""
    with torch.no_grad():
        out = diffusion.network(x_t, t, LABELS).double()
    abar = diffusion.scheduler.alphas_cumprod[t].double().reshape(*t.shape, *([1] * len(GRID)))
    if diffusion.scheduler.prediction_type.value == "v":
        return abar.sqrt() * x_t - (1 - abar).sqrt() * out
    return (x_t - (1 - abar).sqrt() * out) / abar.sqrt()


LABELS = torch.tensor([[0, 0, 1, 1], [2, 2, 2, 0]])


@pytest.mark.parametrize("prediction_type", ["v", "epsilon"])
def test_the_untrained_model_is_the_exact_spatiotemporal_posterior_mean(prediction_type):
    """Given the true covariance and temporal correlations, the untrained model's x0 estimate equals the
    closed-form posterior mean over the whole clip, mu + Sigma (Sigma + D)^-1 (y - mu) with Sigma =
    sum_j lambda_j R_j (x) u_j u_j^T of size (T V)^2 and D the frames' noise, at one t per clip and per frame."""
    diffusion, mask = tiny(prediction_type, temporal=True)
    volumes, labels, runs, covariance, basis, temporal = known_spatiotemporal(mask)
    diffusion.network.fit(volumes, labels, covariance, temporal, basis)
    values = np.einsum("vj,vw,wj->j", basis, covariance, basis)
    sigma = sum(values[j] * np.kron(temporal[j], np.outer(basis[:, j], basis[:, j])) for j in range(len(values)))
    x_t = torch.randn(2, T, *GRID, generator=torch.Generator().manual_seed(3)) * 2 * diffusion.mask
    means = diffusion.network.means.double().numpy()
    for t in (torch.tensor([[300] * T, [50] * T]), torch.tensor([[0, 100, 300, 600], [700, 700, 20, 400]])):
        x0_hat = x0_estimate(diffusion, x_t, t).numpy()
        abar = diffusion.scheduler.alphas_cumprod[t].double().numpy()
        for b in range(2):
            y = (x_t[b].double().numpy()[:, mask] / np.sqrt(abar[b])[:, None]).ravel()
            mu = means[LABELS[b].numpy()].ravel()
            noise = np.repeat((1 - abar[b]) / abar[b], mask.sum())
            exact = mu + sigma @ np.linalg.solve(sigma + np.diag(noise), y - mu)
            assert np.abs(x0_hat[b][:, mask].ravel() - exact).max() < 2e-3 * np.abs(exact).max(), (t, b)
            assert not x0_hat[b][:, ~mask].any()


def test_it_denoises_temporally_correlated_data_better_than_the_spatial_baseline():
    """Fitted from the volumes alone (the train stage's estimates), the temporal Gaussian denoises held-out
    clips of slow components at a clearly lower error than the frame-by-frame one."""
    spatial, mask = tiny()
    temporal, _ = tiny(temporal=True)
    volumes, labels, runs, *_ = known_spatiotemporal(mask)
    train = runs < 5
    fit(spatial.network, volumes[train], labels[train])
    fit_temporal(temporal.network, volumes[train], labels[train], runs[train], mask)
    held = np.flatnonzero(runs == 5)[: 40 * T]
    x0 = torch.as_tensor(volumes[held].reshape(40, T, *GRID), dtype=torch.float32)
    clip_labels = torch.as_tensor(labels[held].reshape(40, T))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2)) * spatial.mask
    t = torch.full((40,), 400)
    x_t = spatial.scheduler.add_noise(x0, noise, t) * spatial.mask
    errors = []
    for model in (spatial, temporal):
        with torch.no_grad():
            x0_hat, _ = model.scheduler.predict_x0_and_eps(model.network(x_t, t, clip_labels), t, x_t)
        errors.append(float(((x0_hat - x0)[:, :, torch.as_tensor(mask)] ** 2).mean()))
    assert errors[1] < 0.8 * errors[0], errors


def test_the_temporal_gaussian_travels_with_the_weights_and_the_untrained_control():
    diffusion, mask = tiny(temporal=True)
    volumes, labels, runs, *_ = known_spatiotemporal(mask, n_runs=2)
    fit_temporal(diffusion.network, volumes, labels, runs, mask)
    rebuilt, _ = tiny(temporal=True)
    assert not rebuilt.network.frame_covariance.any()
    rebuilt.load_state_dict(diffusion.state_dict())
    control = untrained_control(diffusion)
    x_t, t = torch.randn(2, T, *GRID), torch.tensor([100, 600])
    with torch.no_grad():
        assert torch.equal(rebuilt.network(x_t, t, LABELS), diffusion.network(x_t, t, LABELS))
        assert torch.allclose(control.network(x_t, t, LABELS), diffusion.network.baseline(x_t, t, LABELS))
    spatial, _ = tiny()
    with pytest.raises(RuntimeError, match="frame_covariance"):  # a spatial model does not take a temporal state
        spatial.load_state_dict(diffusion.state_dict())


def test_bad_temporal_inputs_are_refused():
    diffusion, mask = tiny(temporal=True)
    volumes, labels, runs, covariance, basis, temporal = known_spatiotemporal(mask, n_runs=2)
    with pytest.raises(ValueError, match="needs temporal= and basis="):
        diffusion.network.fit(volumes, labels, covariance)
    with pytest.raises(ValueError, match="temporal"):
        diffusion.network.fit(volumes, labels, covariance, temporal[:, :2, :2], basis)
    with pytest.raises(ValueError, match="orthonormal"):
        diffusion.network.fit(volumes, labels, covariance, temporal, 2 * basis)
    diffusion.network.fit(volumes, labels, covariance, temporal, basis)
    with pytest.raises(ValueError, match="clips of 4 frames; got 3"):
        diffusion.network.baseline(torch.randn(1, 3, *GRID), torch.tensor([10]), LABELS[:1, :3])
    with pytest.raises(ModalMergeInputError, match="model.gaussian_baseline_temporal"):
        validate_config({"model": {"gaussian_baseline": False, "gaussian_baseline_temporal": True}})
