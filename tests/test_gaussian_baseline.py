"""model.gaussian_baseline: the network learns on top of a Gaussian's exact denoiser (Wiener filter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalmerge.analysis.diffusion_detector import untrained_control
from modalmerge.analysis.generator_baselines import within_category_covariance
from modalmerge.config import validate_config
from modalmerge.diffusion.checkpoints import build_diffusion
from modalmerge.diffusion.gaussian_baseline import GaussianBaselineDenoiser

GRID, T, CLASSES = (4, 3, 2), 4, 3


def tiny(prediction_type="v", temporal=False):
    config = validate_config({"model": {"clip_length": T, "channels": [8, 16], "attention_levels": [1], "temporal_head_dim": 8,
                                        "temporal_heads": 2, "gaussian_baseline": True, "gaussian_baseline_temporal": temporal},
                              "diffusion": {"prediction_type": prediction_type}})
    mask = np.ones(GRID, bool)
    mask[0, 0] = False  # voxels outside the mask stay 0
    torch.manual_seed(0)
    return build_diffusion(config["model"], config["diffusion"], GRID, CLASSES, mask).eval(), mask


def fit(network, volumes, labels):
    """The train stage's spatial fit: category means and the Ledoit-Wolf covariance around them."""
    mask = np.zeros(volumes.shape[1:], bool).flatten()
    mask[network.index.numpy()] = True
    return network.fit(volumes, labels, within_category_covariance(volumes.reshape(len(volumes), -1)[:, mask], labels))


def known_gaussian(mask, n=4000, seed=0):
    """Volumes of a known Gaussian: category means far apart, a strongly correlated covariance."""
    rng = np.random.default_rng(seed)
    v = int(mask.sum())
    factor = rng.normal(size=(v, 3)) * 1.5
    covariance = factor @ factor.T + 0.3 * np.eye(v)
    means = rng.normal(scale=2.0, size=(CLASSES, v))
    labels = rng.integers(0, CLASSES, n)
    flat = means[labels] + rng.multivariate_normal(np.zeros(v), covariance, n)
    volumes = np.zeros((n, *GRID))
    volumes[:, mask] = flat
    return volumes, labels, means, covariance


@pytest.mark.parametrize("prediction_type", ["v", "epsilon"])
def test_the_untrained_model_is_the_exact_gaussian_posterior_mean(prediction_type):
    """Fitted on volumes of a known Gaussian, the untrained model's x0 estimate is the closed-form posterior
    mean mu_c + S (S + lambda_t I)^-1 (x_t / sqrt(abar_t) - mu_c) with the true mean and covariance."""
    diffusion, mask = tiny(prediction_type)
    volumes, labels, means, covariance = known_gaussian(mask, n=40000)
    fit(diffusion.network, volumes, labels)
    x0 = torch.as_tensor(volumes[:2 * T].reshape(2, T, *GRID), dtype=torch.float32)
    clip_labels = torch.as_tensor(labels[:2 * T].reshape(2, T))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1)) * diffusion.mask
    for t in (50, 300, 700):
        t_batch = torch.full((2,), t)
        x_t = diffusion.scheduler.add_noise(x0, noise, t_batch) * diffusion.mask
        abar = float(diffusion.scheduler.alphas_cumprod[t])
        with torch.no_grad():
            out = diffusion.network(x_t, t_batch, clip_labels).double()
        # the target's definition inverted (no clipping of x0, unlike the samplers)
        x0_hat = (np.sqrt(abar) * x_t - np.sqrt(1 - abar) * out if prediction_type == "v"
                  else (x_t - np.sqrt(1 - abar) * out) / np.sqrt(abar))
        mu = means[clip_labels.numpy()]
        y = x_t.numpy()[:, :, mask] / np.sqrt(abar)
        exact = mu + (y - mu) @ np.linalg.solve(covariance + (1 - abar) / abar * np.eye(len(covariance)), covariance)
        scale = np.abs(exact).max()
        assert np.abs(x0_hat.numpy()[:, :, mask] - exact).max() < 0.03 * scale, t
        assert not x0_hat.numpy()[:, :, ~mask].any()


def test_it_denoises_gaussian_data_better_than_the_plain_untrained_network():
    """The point of the baseline: before any training it already denoises held-out Gaussian volumes far
    better than the network alone (which predicts 0, a blind shrinkage)."""
    diffusion, mask = tiny()
    volumes, labels, _, _ = known_gaussian(mask)
    fit(diffusion.network, volumes[:3000], labels[:3000])
    plain = untrained_control(diffusion)
    plain.network = plain.network.network  # the zero network alone, without the Gaussian
    x0 = torch.as_tensor(volumes[3000:3000 + 16 * T].reshape(16, T, *GRID), dtype=torch.float32)
    clip_labels = torch.as_tensor(labels[3000:3000 + 16 * T].reshape(16, T))
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2)) * diffusion.mask
    errors = []
    for model in (diffusion, plain):
        t_batch = torch.full((16,), 300)
        x_t = diffusion.scheduler.add_noise(x0, noise, t_batch) * diffusion.mask
        with torch.no_grad():
            x0_hat, _ = diffusion.scheduler.predict_x0_and_eps(model.network(x_t, t_batch, clip_labels), t_batch, x_t)
        errors.append(float(((x0_hat - x0)[:, :, torch.as_tensor(mask)] ** 2).mean()))
    assert errors[0] < 0.5 * errors[1], errors


def test_the_gaussian_travels_with_the_weights():
    """A fitted model saved and rebuilt from config gives the same output (the Gaussian is in the state)."""
    diffusion, mask = tiny()
    volumes, labels, _, _ = known_gaussian(mask, n=500)
    fit(diffusion.network, volumes, labels)
    rebuilt, _ = tiny()
    assert not torch.equal(rebuilt.network.means, diffusion.network.means)
    rebuilt.load_state_dict(diffusion.state_dict())
    x_t, t, lab = torch.randn(2, T, *GRID), torch.tensor([100, 600]), torch.randint(0, CLASSES, (2, T))
    with torch.no_grad():
        assert torch.equal(rebuilt.network(x_t, t, lab), diffusion.network(x_t, t, lab))


def test_the_untrained_control_keeps_the_gaussian_and_leaves_the_model_alone():
    diffusion, mask = tiny()
    volumes, labels, _, _ = known_gaussian(mask, n=500)
    fit(diffusion.network, volumes, labels)
    inner = diffusion.network.network
    with torch.no_grad():  # make the network's own output non-zero, as training would
        for p in inner.parameters():
            p.add_(0.01 * torch.randn_like(p))
    control = untrained_control(diffusion)
    assert diffusion.network.network is inner
    x_t, t, lab = torch.randn(2, T, *GRID), torch.tensor([100, 600]), torch.randint(0, CLASSES, (2, T))
    with torch.no_grad():
        assert torch.allclose(control.network(x_t, t, lab), diffusion.network.baseline(x_t, t, lab))
        assert not torch.allclose(control.network(x_t, t, lab), diffusion.network(x_t, t, lab))


def test_per_frame_timesteps_and_the_null_label():
    """Per-frame timesteps (context frames) get their own noise level; the null label gets the overall mean."""
    diffusion, mask = tiny()
    volumes, labels, _, _ = known_gaussian(mask, n=500)
    network = diffusion.network
    fit(network, volumes, labels)
    x_t = torch.randn(1, T, *GRID)
    lab = torch.randint(0, CLASSES, (1, T))
    per_frame = network.baseline(x_t, torch.tensor([[0, 100, 300, 600]]), lab)
    for i, t in enumerate((0, 100, 300, 600)):
        assert torch.allclose(per_frame[:, i], network.baseline(x_t, torch.tensor([t]), lab)[:, i], atol=1e-5)
    inside = network.index
    assert torch.allclose(network.means[network.null_label], torch.as_tensor(volumes.reshape(500, -1)[:, inside.numpy()].mean(0), dtype=torch.float32), atol=1e-5)


def test_bad_labels_are_refused():
    diffusion, mask = tiny()
    volumes, labels, _, _ = known_gaussian(mask, n=100)
    with pytest.raises(ValueError, match="outside 0..2"):
        fit(diffusion.network, volumes, np.where(labels == 0, 7, labels))
    covariance = within_category_covariance(volumes[:, mask], labels)
    with pytest.raises(ValueError, match="100 volumes but 99 labels"):
        diffusion.network.fit(volumes, labels[:99], covariance)
    with pytest.raises(ValueError, match="covariance is"):
        diffusion.network.fit(volumes, labels, covariance[1:, 1:])
    with pytest.raises(ValueError, match="spatial"):  # a spatial baseline given temporal correlations
        diffusion.network.fit(volumes, labels, covariance, np.ones((len(covariance), T, T)), np.eye(len(covariance)))
    assert isinstance(diffusion.network, GaussianBaselineDenoiser)


def test_the_reconstruction_detector_on_the_gaussian_is_the_ridge_inverse_residual_plus_noise():
    """bench/README 43: one DDIM step from t returns the Gaussian's posterior mean, so averaged over noise draws
    the detector's squared residual is (lambda_t (S + lambda_t I)^-1 (x - mu_c))^2 plus a constant per voxel,
    lambda_t (G G^T)_vv with G = S (S + lambda_t I)^-1: the classical ridge-inverse z-score at lambda_t, and
    nothing else of x."""
    from modalmerge.analysis.diffusion_detector import DiffusionDetector

    diffusion, mask = tiny()
    rng = np.random.default_rng(3)
    v = int(mask.sum())
    factor = rng.normal(size=(v, 3)) * 0.6
    covariance = factor @ factor.T + 0.1 * np.eye(v)  # small enough that the sampler's x0 clip (5) never bites
    means = rng.normal(scale=0.3, size=(CLASSES, v))
    labels = rng.integers(0, CLASSES, 20000)
    volumes = np.zeros((len(labels), *GRID))
    volumes[:, mask] = means[labels] + rng.multivariate_normal(np.zeros(v), covariance, len(labels))
    fit(diffusion.network, volumes, labels)
    clips, design = volumes[:24 * T].reshape(24, T, *GRID).astype(np.float32), labels[:24 * T].reshape(24, T)
    t = 200
    detector = DiffusionDetector(mask, diffusion, t_start=t, steps=1, n_draws=400, smoothing=0.0, seed=1)
    measured = detector.residuals(clips, design)[:, :, mask]
    lam = float((1 - diffusion.scheduler.alphas_cumprod[t]) / diffusion.scheduler.alphas_cumprod[t])
    inverse = np.linalg.inv(covariance + lam * np.eye(v))
    bias = lam * (clips[:, :, mask] - means[design]) @ inverse  # inverse is symmetric
    gain = covariance @ inverse
    noise = lam * np.einsum("ij,ij->i", gain, gain)  # lambda_t (G G^T)_vv
    expected = bias ** 2 + noise
    assert np.abs(measured - expected).mean() < 0.1 * expected.mean()
    assert np.corrcoef(measured.ravel(), expected.ravel())[0, 1] > 0.97
    # the x-dependent part is the ridge-inverse residual: the same check with another ridge fails
    wrong = (4 * lam * (clips[:, :, mask] - means[design]) @ np.linalg.inv(covariance + 4 * lam * np.eye(v))) ** 2 + noise
    assert np.corrcoef(measured.ravel(), wrong.ravel())[0, 1] < np.corrcoef(measured.ravel(), expected.ravel())[0, 1] - 0.01
