"""The captured training step (``train.cuda_graph``): its static-buffer step equals the plain loop,
and the choice is resolved or refused clearly. The capture itself needs a CUDA GPU
(``bench/measure_training_step.py`` checks it against the eager loop there)."""

from __future__ import annotations

import copy

import pytest
import torch

from modalmerge.diffusion.gaussian import GaussianDiffusion
from modalmerge.diffusion.schedulers import Scheduler
from modalmerge.errors import ModalMergeInputError
from modalmerge.model import SpatioTemporalDenoiser
from modalmerge.training.graphed import StaticStep, use_cuda_graph
from modalmerge.training.trainer import ExponentialMovingAverage, config_fingerprint

TINY = dict(channels=(8, 16, 16), attention_levels=(2,), temporal_heads=2, temporal_head_dim=8, norm_groups=4)


def setup(seed=0, optimizer="adamw", dropout=0.0, context_prob=0.0):
    torch.manual_seed(seed)
    network = SpatioTemporalDenoiser((6, 10, 10), 4, 9, dropout=dropout, **TINY)
    for p in network.parameters():  # zero-initialised output layers would make the first steps trivial
        torch.nn.init.normal_(p, std=0.05)
    diffusion = GaussianDiffusion(network, Scheduler(1000, prediction_type="v"), torch.ones(6, 10, 10),
                                  label_dropout=0.2, min_snr_gamma=5.0, context_prob=context_prob)
    optimizer = (torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.01) if optimizer == "adamw"
                 else torch.optim.SGD(network.parameters(), lr=1e-3, momentum=0.9))  # SGD: clipping shows
    return diffusion, optimizer, ExponentialMovingAverage(network, 0.99)


def batches(n, seed=1, context_prob=0.0):
    generator = torch.Generator().manual_seed(seed)
    diffusion, _, _ = setup(context_prob=context_prob)
    out = []
    for _ in range(n):
        x0 = torch.randn(3, 4, 6, 10, 10, generator=generator)
        labels = torch.randint(0, 8, (3, 4), generator=generator)
        out.append((x0, labels, diffusion.training_draws(3, x0.shape[1:], generator)))
    return out


@pytest.mark.parametrize("kind, dropout, context_prob", [("adamw", 0.0, 0.0), ("sgd", 0.0, 0.0), ("adamw", 0.1, 0.5)])
def test_the_static_step_trains_exactly_like_the_plain_loop(kind, dropout, context_prob):
    """Also with dropout (random inside the step) and clean context frames (one more draw)."""
    data = batches(5, context_prob=context_prob)
    assert (data[0][2].context is not None) == (context_prob > 0)
    lrs = [1e-3, 8e-4, 6e-4, 4e-4, 2e-4]
    diffusion, optimizer, ema = setup(optimizer=kind, dropout=dropout, context_prob=context_prob)
    plain_losses = []
    for (x0, labels, draws), lr in zip(data, lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = diffusion(x0, labels, draws=draws)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diffusion.network.parameters(), 0.01)
        optimizer.step()
        ema.update(diffusion.network)
        plain_losses.append(float(loss.detach()))

    static_diffusion, static_optimizer, static_ema = setup(optimizer=kind, dropout=dropout, context_prob=context_prob)
    step = StaticStep(static_diffusion, static_optimizer, static_ema, grad_clip=0.01, amp_dtype=None, capture=False)
    static_losses = [float(step(x0, labels, draws, lr)) for (x0, labels, draws), lr in zip(data, lrs)]

    assert static_losses == pytest.approx(plain_losses, rel=1e-6)
    assert static_ema.updates == ema.updates == 5
    for mine, theirs in ((static_diffusion.network, diffusion.network), (static_ema.shadow, ema.shadow)):
        for (name, a), b in zip(mine.named_parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
    # the steps changed the weights and the EMA lags them (the comparison above is not vacuous)
    untouched, _, _ = setup(dropout=dropout, context_prob=context_prob)
    moved = [float((a - b).abs().max()) for a, b in zip(diffusion.network.parameters(), untouched.network.parameters())]
    assert max(moved) > 1e-5  # far beyond the tolerance above
    assert any(not torch.equal(a, b) for a, b in zip(ema.shadow.parameters(), diffusion.network.parameters()))


def test_the_static_step_refuses_inputs_that_change_shape():
    diffusion, optimizer, ema = setup()
    step = StaticStep(diffusion, optimizer, ema, grad_clip=1.0, amp_dtype=None, capture=False)
    (x0, labels, draws), = batches(1)
    step(x0, labels, draws, 1e-3)
    with pytest.raises(ValueError, match="'x0' changed"):
        step(x0[:2], labels[:2], draws.part(slice(0, 2)), 1e-3)


def test_the_ema_with_a_device_weight_equals_the_float_weight():
    diffusion, _, _ = setup()
    a, b = ExponentialMovingAverage(diffusion.network, 0.9), ExponentialMovingAverage(diffusion.network, 0.9)
    for p in diffusion.network.parameters():
        p.data.add_(1.0)
    a.apply(diffusion.network, 0.25)
    b.apply(diffusion.network, torch.tensor(0.25))
    for x, y in zip(a.shadow.parameters(), b.shadow.parameters()):
        torch.testing.assert_close(x, y)
    assert a.next_weight() == pytest.approx(1 - 2 / 11)


@pytest.mark.parametrize("choice, device, distributed, checkpointing, expected", [
    ("auto", "cpu", False, False, False), ("off", "cpu", False, False, False), (False, "cpu", False, False, False),
    ("auto", "cuda", False, False, True), (True, "cuda", False, False, True), ("off", "cuda", False, False, False),
    ("auto", "cuda", True, False, False), ("auto", "cuda", False, True, False),
])
def test_cuda_graph_choice_is_resolved(choice, device, distributed, checkpointing, expected):
    assert use_cuda_graph(choice, torch.device(device), distributed, checkpointing) is expected


@pytest.mark.parametrize("device, distributed, checkpointing, message", [
    ("cpu", False, False, "the device is not a CUDA GPU"),
    ("cuda", True, False, "training runs in several processes"),
    ("cuda", False, True, "gradient checkpointing"),
])
def test_cuda_graph_on_where_impossible_is_refused(device, distributed, checkpointing, message):
    with pytest.raises(ModalMergeInputError, match=f"'train.cuda_graph' is 'on' but {message}"):
        use_cuda_graph("on", torch.device(device), distributed, checkpointing)
    with pytest.raises(ModalMergeInputError, match="must be one of auto, on, off"):
        use_cuda_graph("sometimes", torch.device(device), distributed, checkpointing)


def test_cuda_graph_does_not_change_what_a_checkpoint_resumes():
    config = {"train": {"steps": 10, "cuda_graph": "auto"}, "model": {}}
    other = copy.deepcopy(config)
    other["train"]["cuda_graph"] = "off"
    assert config_fingerprint(config) == config_fingerprint(other)


def test_a_checkpoint_of_a_captured_run_resumes_with_or_without_the_graph():
    """The saved optimiser state is the eager one (float learning rate, not capturable); loading it
    into a captured run's optimiser gives back the device learning rate and device step counts."""
    from modalmerge.training.graphed import load_optimizer_state, portable_optimizer_state
    diffusion, optimizer, _ = setup()
    (x0, labels, draws), = batches(1)
    diffusion(x0, labels, draws=draws).backward()
    optimizer.step()
    saved = portable_optimizer_state(optimizer)
    assert all(isinstance(g["lr"], float) and g["capturable"] is False for g in saved["param_groups"])

    lr = torch.tensor(5e-4)
    captured = torch.optim.AdamW(diffusion.network.parameters(), lr=lr, weight_decay=0.01)
    load_optimizer_state(captured, saved, capturable=True)
    assert all(g["lr"] is lr and g["capturable"] is True for g in captured.param_groups)
    steps = [s["step"] for s in captured.state.values()]
    assert steps and all(s.dtype == torch.float32 and float(s) == 1 for s in steps)

    eager = torch.optim.AdamW(diffusion.network.parameters(), lr=1e-3, weight_decay=0.01)
    load_optimizer_state(eager, saved, capturable=False)
    assert all(g["lr"] == 1e-3 and g["capturable"] is False for g in eager.param_groups)
