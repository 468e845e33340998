"""The exponential moving average of the weights that sampling and analysis use."""

from __future__ import annotations

import copy

import torch


class ExponentialMovingAverage:
    """EMA of the weights with a warm-up: decay_k = min(decay, (1 + k) / (10 + k)).

    Written here (not torch.optim.swa_utils) for the warm-up: a fixed 0.999 with no warm-up was
    measured worse than the raw weights over short CPU runs.
    """

    def __init__(self, network: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = copy.deepcopy(network).eval().requires_grad_(False)
        self.updates = 0

    def next_weight(self) -> float:
        """Count one more update and return its weight 1 - decay_k."""
        self.updates += 1
        return 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def apply(self, network: torch.nn.Module, weight: float | torch.Tensor) -> None:
        """shadow += weight * (weights - shadow); ``weight`` a float or a 0-d device tensor (what a
        captured CUDA graph reads at every replay)."""
        shadow = list(self.shadow.parameters())
        weights = [p.detach() for p in network.parameters()]
        if torch.is_tensor(weight):
            difference = torch._foreach_sub(weights, shadow)
            torch._foreach_mul_(difference, weight)
            torch._foreach_add_(shadow, difference)
        else:
            # one fused call over all parameters instead of one kernel each
            torch._foreach_lerp_(shadow, weights, weight)
        for ema_b, b in zip(self.shadow.buffers(), network.buffers()):
            ema_b.copy_(b)

    def update(self, network: torch.nn.Module) -> None:
        self.apply(network, self.next_weight())
