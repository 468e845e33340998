"""The denoiser and the diffusion wrapper: shapes on every grid, guidance, overfitting a tiny batch."""

from __future__ import annotations

import pytest
import torch

from modalmerge.diffusion.gaussian import GaussianDiffusion
from modalmerge.model import SpatioTemporalDenoiser
from modalmerge.diffusion.schedulers import Scheduler

TINY = dict(channels=(8, 16, 16), attention_levels=(2,), temporal_heads=2, temporal_head_dim=8, norm_groups=4)


@pytest.mark.parametrize("grid", [(6, 10, 10), (40, 20, 1), (37, 19, 1), (40, 64, 64), (5, 7, 3), (1, 9, 1)])
def test_output_has_the_input_shape_on_every_grid(grid):
    torch.manual_seed(0)
    network = SpatioTemporalDenoiser(grid, clip_length=3, n_classes=9, **TINY)
    x = torch.randn(2, 3, *grid)
    out = network(x, torch.tensor([3, 700]), torch.randint(0, 10, (2, 3)))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_singleton_axis_is_never_padded():
    network = SpatioTemporalDenoiser((37, 19, 1), 8, 9)
    assert network.padded_grid == (40, 24, 1)
    assert network.conv_in.kernel_size == (3, 3, 1)


def test_wrong_grid_and_bad_arguments_are_reported():
    network = SpatioTemporalDenoiser((6, 10, 10), 4, 9, **TINY)
    with pytest.raises(ValueError, match=r"Expected \(B, T, 6, 10, 10\)"):
        network(torch.randn(1, 4, 6, 10, 9), torch.tensor([1]), torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of norm_groups=8"):
        SpatioTemporalDenoiser((6, 10, 10), 4, 9, channels=(12, 24))
    with pytest.raises(ValueError, match="attention_levels must be in 0..1"):
        SpatioTemporalDenoiser((6, 10, 10), 4, 9, channels=(8, 16), norm_groups=4, attention_levels=(2,))


def test_frames_interact_through_the_temporal_path():
    """Changing one frame changes the prediction for another frame (the clip is modelled jointly)."""
    torch.manual_seed(0)
    network = SpatioTemporalDenoiser((6, 10, 10), 4, 9, **TINY)
    for p in network.parameters():  # zero-initialised output layers would hide the interaction
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 4, 6, 10, 10)
    labels = torch.zeros(1, 4, dtype=torch.long)
    t = torch.tensor([10])
    changed = x.clone()
    changed[:, 3] += 1.0
    assert not torch.allclose(network(x, t, labels)[:, 0], network(changed, t, labels)[:, 0])


def tiny_diffusion(grid=(6, 10, 10), clip_length=4, **kwargs) -> GaussianDiffusion:
    torch.manual_seed(0)
    network = SpatioTemporalDenoiser(grid, clip_length, 9, **TINY)
    return GaussianDiffusion(network, Scheduler(1000), torch.ones(grid), **kwargs)


def test_guidance_at_the_neutral_scale_is_the_conditional_prediction():
    diffusion = tiny_diffusion()
    for p in diffusion.network.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 4, 6, 10, 10), torch.tensor([5, 500])
    labels = torch.randint(0, 9, (2, 4))
    conditional = diffusion.network(x, t, labels)
    assert torch.allclose(diffusion.guided_output(x, t, labels, 1.0), conditional, atol=1e-6)
    unconditional = diffusion.network(x, t, torch.full_like(labels, diffusion.null_label))
    assert not torch.allclose(conditional, unconditional)
    assert torch.allclose(diffusion.guided_output(x, t, labels, 0.0), unconditional, atol=1e-5)
    expected = unconditional + 3.0 * (conditional - unconditional)
    assert torch.allclose(diffusion.guided_output(x, t, labels, 3.0), expected, atol=1e-5)


def test_label_dropout_replaces_whole_clips_by_the_null_label():
    diffusion = tiny_diffusion(label_dropout=0.5)
    labels = torch.randint(0, 9, (2000, 4))
    draws = diffusion.training_draws(len(labels), (4, 6, 10, 10), torch.Generator().manual_seed(0))
    dropped = diffusion.drop_labels(labels, draws.drop)
    is_null = dropped == diffusion.null_label
    assert (is_null.all(1) | (~is_null).all(1)).all()
    assert is_null.all(1).float().mean().item() == pytest.approx(0.5, abs=0.05)


def test_a_shard_of_the_global_draws_gives_the_same_loss_terms_as_the_whole_batch():
    """What data-parallel training relies on: the mean of the shards' losses is the batch loss."""
    diffusion = tiny_diffusion(label_dropout=0.3)
    x0, labels = torch.randn(4, 4, 6, 10, 10), torch.randint(0, 9, (4, 4))
    draws = diffusion.training_draws(4, x0.shape[1:], torch.Generator().manual_seed(3))
    whole = diffusion(x0, labels, draws=draws)
    halves = [diffusion(x0[s], labels[s], draws=draws.part(s)) for s in (slice(0, 2), slice(2, 4))]
    assert torch.allclose(whole, torch.stack(halves).mean(), rtol=1e-5)
    again = diffusion(x0, labels, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(whole, again)


def test_loss_is_the_mean_squared_error_over_brain_voxels_only():
    diffusion = tiny_diffusion()
    for p in diffusion.network.parameters():
        torch.nn.init.normal_(p, std=0.05)
    diffusion.mask[:3] = 0
    x0, noise = torch.randn(2, 4, 6, 10, 10), torch.randn(2, 4, 6, 10, 10)
    t, labels = torch.tensor([100, 200]), torch.zeros(2, 4, dtype=torch.long)
    prediction = diffusion.network(diffusion.scheduler.add_noise(x0, noise, t), t, labels)
    inside = (prediction - noise)[..., 3:, :, :]
    expected = inside.pow(2).flatten(1).mean(1)
    assert torch.allclose(diffusion.loss_per_clip(x0, labels, t, noise), expected, atol=1e-5)


def test_tiny_model_overfits_a_tiny_batch():
    diffusion = tiny_diffusion(grid=(8, 8, 1), clip_length=2)
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 2, 8, 8, 1, generator=generator)
    labels = torch.randint(0, 9, (2, 2), generator=generator)
    t = torch.tensor([50, 300])
    noise = torch.randn(x0.shape, generator=generator)
    optimizer = torch.optim.Adam(diffusion.network.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = diffusion.loss_per_clip(x0, labels, t, noise).mean()
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] == pytest.approx(1.0, abs=0.2)  # zero-initialised output: the trivial baseline
    assert min(losses[-10:]) < 0.1 * losses[0], losses[::20]


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = SpatioTemporalDenoiser((6, 10, 10), 4, 9, **TINY)
    checkpointed = SpatioTemporalDenoiser((6, 10, 10), 4, 9, gradient_checkpointing=True, **TINY)
    checkpointed.load_state_dict(plain.state_dict())
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)
    checkpointed.load_state_dict(plain.state_dict())
    x, t, y = torch.randn(2, 4, 6, 10, 10), torch.tensor([1, 2]), torch.zeros(2, 4, dtype=torch.long)
    plain(x, t, y).pow(2).sum().backward()
    checkpointed(x, t, y).pow(2).sum().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5)


@pytest.mark.parametrize("kernel, stride, padding", [((3, 3, 1), 1, (1, 1, 0)), ((3, 3, 1), (2, 2, 1), (1, 1, 0)),
                                                     ((1, 1, 1), 1, 0)])
def test_the_slice_convolution_computes_what_a_3d_convolution_computes(kernel, stride, padding):
    """The 2D fast path for a singleton last axis: same outputs and gradients as nn.Conv3d, same state dict."""
    from modalmerge.model.spatial import Conv3d
    torch.manual_seed(0)
    fast = Conv3d(6, 5, kernel, stride=stride, padding=padding)
    plain = torch.nn.Conv3d(6, 5, kernel, stride=stride, padding=padding)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(4, 6, 9, 7, 1, requires_grad=True)
    out_fast, out_plain = fast(x), plain(x)
    assert out_fast.shape == out_plain.shape and torch.allclose(out_fast, out_plain, atol=1e-5)
    grad_fast = torch.autograd.grad(out_fast.square().sum(), [x, fast.weight])
    grad_plain = torch.autograd.grad(out_plain.square().sum(), [x, plain.weight])
    for a, b in zip(grad_fast, grad_plain):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    # a true 3D input takes the 3D path
    x3 = torch.randn(2, 6, 5, 5, 3)
    if kernel[-1] == 1:
        assert torch.allclose(fast(x3), plain(x3), atol=1e-5)


def test_the_temporal_convolution_mixes_only_neighbouring_frames_of_the_same_voxel_and_clip():
    """Width-3 convolution over time at each voxel: a change at (clip 0, frame 3, voxel (1, 2)) moves the
    output at frames 2-4 of that voxel and clip only."""
    from modalmerge.model.temporal import TemporalConvolution
    torch.manual_seed(0)
    layer = TemporalConvolution(8, norm_groups=4)
    torch.nn.init.normal_(layer.conv.weight, std=0.5)
    layer.norm = torch.nn.Identity()  # GroupNorm would spread the change over its frame's voxels
    clips, frames = 2, 6
    h = torch.randn(clips * frames, 8, 4, 5, 1)
    changed = h.clone()
    changed[3, :, 1, 2, 0] += 1.0  # clip 0, frame 3
    moved = (layer(changed, frames) - layer(h, frames)).abs().amax(dim=1).reshape(clips, frames, 4, 5)
    where = set(map(tuple, torch.nonzero(moved > 1e-6).tolist()))
    assert where == {(0, 2, 1, 2), (0, 3, 1, 2), (0, 4, 1, 2)}
