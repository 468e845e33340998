"""One training step on static buffers, captured once in a CUDA graph and replayed.

On the embedded slice data a step is a few hundred small kernels: the GPU waits for Python to
launch them (the step was launch-bound: 54 ms at 4 clips, 41 ms at 16 clips on an H200). A CUDA
graph records the whole step (forward, backward, gradient clipping, AdamW, EMA) once and replays it
with one launch. What changes from step to step lives in device tensors the graph reads: the
clips, labels and draws are copied into static buffers, the learning rate and the EMA weight are
filled into 0-d tensors, the optimiser counts its steps on the device (``capturable=True``).

The same class runs uncaptured (``capture=False``) on any device: the step then executes eagerly on
the same static buffers. That is the trainer's step wherever no graph is used (a CPU, DDP, gradient
checkpointing, ``train.cuda_graph: off``), and how the CPU tests check it against a plain loop.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ..diffusion.gaussian import GaussianDiffusion, TrainingDraws
from ..errors import ModalMergeInputError

CUDA_GRAPH_CHOICES = ("auto", "on", "off")


def use_cuda_graph(choice: str | bool, device: torch.device, distributed: bool, gradient_checkpointing: bool) -> bool:
    """Resolve ``train.cuda_graph``: ``auto`` = one CUDA process without gradient checkpointing
    (``True``/``False``, what YAML makes of an unquoted on/off, mean ``on``/``off``)."""
    if isinstance(choice, bool):
        choice = "on" if choice else "off"
    if choice not in CUDA_GRAPH_CHOICES:
        raise ModalMergeInputError(f"config key 'train.cuda_graph' must be one of {', '.join(CUDA_GRAPH_CHOICES)}; got {choice!r}.")
    possible = device.type == "cuda" and not distributed and not gradient_checkpointing
    if choice == "on" and not possible:
        why = ("the device is not a CUDA GPU" if device.type != "cuda" else
               "training runs in several processes (DDP)" if distributed else
               "gradient checkpointing saves and restores the RNG state, which a captured graph cannot do")
        raise ModalMergeInputError(f"config key 'train.cuda_graph' is 'on' but {why}; set it to 'auto' or 'off'.")
    return choice != "off" and possible


def portable_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """The optimiser's state as an uncaptured run saves it (a float learning rate, not capturable),
    so that a checkpoint resumes on any device with or without a CUDA graph."""
    state = optimizer.state_dict()
    state["param_groups"] = [{**group, "lr": float(group["lr"]), "capturable": False} for group in state["param_groups"]]
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict, capturable: bool) -> None:
    """Load a (portable) optimiser state; a captured step gets back its device learning rate and
    device step counts."""
    lrs = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    if capturable:
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"], group["capturable"] = lr, True
        for param_state in optimizer.state.values():
            if "step" in param_state:
                param_state["step"] = param_state["step"].to(lrs[0].device, torch.float32)


class StaticStep:
    """Forward, backward, clipping, optimiser and EMA of one training step on static input buffers:
    the trainer's step, captured or not.

    With ``capture``, ``warmup`` eager steps (real steps: they train) run on a side stream before the
    capture, as CUDA graphs require, and every later call replays the graph; the optimiser must then
    be ``capturable`` with a 0-d tensor learning rate. ``model`` computes the loss (the diffusion
    process itself, or its DistributedDataParallel wrapper); ``diffusion`` owns the weights.
    """

    def __init__(self, diffusion: GaussianDiffusion, optimizer: torch.optim.Optimizer, ema, grad_clip: float,
                 amp_dtype: torch.dtype | None, capture: bool, warmup: int = 3, model: torch.nn.Module | None = None):
        self.diffusion = diffusion
        self.model = model if model is not None else diffusion
        self.optimizer = optimizer
        self.ema = ema
        self.grad_clip = grad_clip
        self.amp_dtype = amp_dtype
        self.capture = capture
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.buffers: dict | None = None
        self.loss: torch.Tensor | None = None
        device = diffusion.mask.device
        self.ema_weight = torch.zeros((), device=device)  # what a captured EMA reads
        self.weight = 0.0  # the uncaptured EMA's weight (a float: torch's fused lerp, as before the graph)
        self.stream = torch.cuda.Stream(device) if capture else None

    def _fill(self, x0: torch.Tensor, labels: torch.Tensor, draws: TrainingDraws) -> None:
        fresh = {"x0": x0, "labels": labels, "t": draws.t, "noise": draws.noise, "drop": draws.drop,
                 "context": draws.context}
        if self.buffers is None:
            self.buffers = {k: None if v is None else torch.empty_like(v) for k, v in fresh.items()}
        for key, value in fresh.items():
            if (value is None) != (self.buffers[key] is None) or (value is not None and value.shape != self.buffers[key].shape):
                raise ValueError(f"a captured training step needs the same inputs every step; {key!r} changed")
            if value is not None:
                self.buffers[key].copy_(value, non_blocking=True)

    def _body(self) -> torch.Tensor:
        b = self.buffers
        draws = TrainingDraws(b["t"], b["noise"], b["drop"], b["context"])
        amp = (torch.autocast(b["x0"].device.type, dtype=self.amp_dtype, cache_enabled=not self.capture)
               if self.amp_dtype is not None else nullcontext())
        with amp:
            loss = self.model(b["x0"], b["labels"], draws=draws)
        loss.backward()
        parameters = list(self.diffusion.network.parameters())
        torch.nn.utils.clip_grad_norm_(parameters, self.grad_clip)
        self.optimizer.step()
        self.ema.apply(self.diffusion.network, self.ema_weight if self.capture else self.weight)
        return loss.detach().float()

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if torch.is_tensor(group["lr"]):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def __call__(self, x0: torch.Tensor, labels: torch.Tensor, draws: TrainingDraws, lr: float) -> torch.Tensor:
        """One training step; returns the loss as a device tensor (read it before the next call)."""
        self._fill(x0, labels, draws)
        self.set_learning_rate(lr)
        self.weight = self.ema.next_weight()
        self.calls += 1
        if not self.capture:
            self.optimizer.zero_grad(set_to_none=True)
            self.loss = self._body()
            return self.loss
        self.ema_weight.fill_(self.weight)
        current = torch.cuda.current_stream(self.ema_weight.device)
        if self.calls <= self.warmup:  # eager, on a side stream (what capture needs to have seen)
            self.stream.wait_stream(current)
            with torch.cuda.stream(self.stream):
                self.optimizer.zero_grad(set_to_none=True)
                self.loss = self._body()
            current.wait_stream(self.stream)
            return self.loss
        if self.graph is None:
            self.optimizer.zero_grad(set_to_none=True)  # backward in the graph then writes the gradients
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self._body()
        self.graph.replay()
        return self.loss


class PinnedUpload:
    """Host-to-device copies of small index tensors without a stream synchronisation: a copy from
    pageable memory synchronises the stream, one from pinned memory does not. A ring of pinned
    buffers, each reused only once the copy that last read it has run (its event)."""

    def __init__(self, device: torch.device, slots: int = 4):
        self.device, self.slots, self.next = device, slots, 0
        self.buffers: list[torch.Tensor | None] = [None] * slots
        self.events = [torch.cuda.Event() for _ in range(slots)]

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        slot, self.next = self.next, (self.next + 1) % self.slots
        self.events[slot].synchronize()  # returns at once unless the GPU is `slots` copies behind
        if self.buffers[slot] is None or self.buffers[slot].shape != values.shape:
            self.buffers[slot] = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        self.buffers[slot].copy_(values)
        on_device = self.buffers[slot].to(self.device, non_blocking=True)
        self.events[slot].record()
        return on_device
