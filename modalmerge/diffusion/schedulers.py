"""Noise schedules and samplers, separate from the network.

One :class:`Scheduler` base holds the schedule and ``add_noise``; :class:`DDPMScheduler` and
:class:`DDIMScheduler` implement ``set_timesteps(n)`` and
``step(model_output, t, sample, generator) -> (prev_sample, pred_x0)``, so one trained model
samples with either. DDIM with fewer steps than training steps is the fast sampler.
"""

from __future__ import annotations

import enum
import math

import torch

from .posterior_noise import GaussianPrior


class StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return self.value


class ScheduleKind(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"


class PredictionType(StrEnum):
    EPSILON = "epsilon"
    V = "v"


def parse_enum(enum_cls, value, name: str):
    try:
        return enum_cls(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum_cls)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}.") from None


def linear_betas(n_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule (Ho et al. 2020)."""
    return torch.linspace(beta_start, beta_end, n_steps, dtype=torch.float64)


def cosine_betas(n_steps: int, offset: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's (2021) cosine schedule."""
    steps = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    alpha_bar = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def make_betas(kind: str, n_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    kind = parse_enum(ScheduleKind, kind, "schedule")
    return linear_betas(n_steps, beta_start, beta_end) if kind is ScheduleKind.LINEAR else cosine_betas(n_steps)


def _gather(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """``values[t]`` shaped to broadcast over a sample of ``ndim`` dimensions (``values`` on ``t``'s device)."""
    return values[t].float().reshape(-1, *([1] * (ndim - 1)))


class Scheduler:
    """The forward process q(x_t | x_0) of a schedule, and conversions between targets.

    ``clip_sample`` bounds the predicted x_0 during sampling (z units): without it DDIM was
    measured to diverge on fMRI (std 20-150 against 1), so samplers clip and recompute eps.
    """

    def __init__(self, n_train_steps: int = 1000, schedule: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, prediction_type: str = "epsilon", clip_sample: float | None = 5.0):
        if n_train_steps < 2:
            raise ValueError(f"n_train_steps must be >= 2; got {n_train_steps}.")
        # what rebuilds this schedule (a sampler shares the training schedule through it)
        self.config = {"n_train_steps": n_train_steps, "schedule": schedule, "beta_start": beta_start,
                       "beta_end": beta_end, "prediction_type": prediction_type, "clip_sample": clip_sample}
        self.n_train_steps = n_train_steps
        self.schedule = parse_enum(ScheduleKind, schedule, "schedule")
        self.prediction_type = parse_enum(PredictionType, prediction_type, "prediction_type")
        self.clip_sample = clip_sample
        self.betas = make_betas(schedule, n_train_steps, beta_start, beta_end)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        self.timesteps = torch.arange(n_train_steps - 1, -1, -1)
        self._abar_on: dict[torch.device, torch.Tensor] = {}

    def abar_on(self, device: torch.device) -> torch.Tensor:
        """``alphas_cumprod`` (float64) on ``device``, copied there once: a copy from pageable host
        memory per training step made the GPU stream synchronise three times a step."""
        table = self._abar_on.get(device)
        if table is None:
            table = self._abar_on[device] = self.alphas_cumprod.to(device)
        return table

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) with the given noise."""
        abar = _gather(self.abar_on(t.device), t, x0.ndim)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network learns to predict: eps, or v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
        if self.prediction_type is PredictionType.EPSILON:
            return noise
        abar = _gather(self.abar_on(t.device), t, x0.ndim)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        abar = self.abar_on(t.device)[t].float()
        return abar / (1 - abar)

    def predict_x0_and_eps(self, model_output: torch.Tensor, t: torch.Tensor, sample: torch.Tensor):
        """(pred_x0, pred_eps) from the network's output; x_0 clipped to ``clip_sample`` and eps recomputed."""
        abar = _gather(self.abar_on(t.device), t, sample.ndim)
        if self.prediction_type is PredictionType.EPSILON:
            x0 = (sample - (1 - abar).sqrt() * model_output) / abar.sqrt()
        else:
            x0 = abar.sqrt() * sample - (1 - abar).sqrt() * model_output
        if self.clip_sample is not None:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        eps = (sample - abar.sqrt() * x0) / (1 - abar).sqrt()
        return x0, eps

    def set_timesteps(self, n_steps: int) -> None:
        raise NotImplementedError

    def step(self, model_output, t: int, sample, generator=None):
        raise NotImplementedError

    @staticmethod
    def _noise_like(sample: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        return torch.randn(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)


VARIANCES = ("small", "large", "gaussian_posterior")


def check_variance(variance: str) -> str:
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {', '.join(VARIANCES)}; got {variance!r}.")
    return variance


def ancestral_step(x0, sample, abar_t: float, abar_prev: float, variance: str, noise):
    """One ancestral step from ``t`` to an earlier step ``prev`` (any stride): the posterior mean of
    q(x_prev | x_t, x0) plus noise of variance beta-tilde (``small``: the posterior's own, exact for
    a single data point) or beta = 1 - abar_t / abar_prev (``large``: exact for unit-Gaussian data;
    Ho et al. 2020, section 3.2). ``noise`` is None at the last step."""
    beta = 1 - abar_t / abar_prev
    mean = (math.sqrt(abar_prev) * beta / (1 - abar_t)) * x0 + (math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar_t)) * sample
    if noise is None:
        return mean
    spread = beta * (1 - abar_prev) / (1 - abar_t) if variance == "small" else beta
    return mean + math.sqrt(spread) * noise


class DDPMScheduler(Scheduler):
    """Ancestral sampling with the posterior variance beta-tilde (``variance="small"``) or beta
    (``"large"``) (Ho et al. 2020), all steps."""

    def __init__(self, *args, variance: str = "small", **kwargs):
        super().__init__(*args, **kwargs)
        if check_variance(variance) == "gaussian_posterior":
            raise ValueError("variance 'gaussian_posterior' is a DDIM option (sampler ddim, eta 1; with all steps it is "
                             "DDPM's chain).")
        self.variance = variance

    def set_timesteps(self, n_steps: int | None = None) -> None:
        if n_steps not in (None, self.n_train_steps):
            raise ValueError(f"DDPM samples with all {self.n_train_steps} training steps; use DDIM for {n_steps}.")
        self.timesteps = torch.arange(self.n_train_steps - 1, -1, -1)

    def step(self, model_output, t: int, sample, generator=None):
        t_batch = torch.full((sample.shape[0],), t, device=sample.device, dtype=torch.long)
        x0, _ = self.predict_x0_and_eps(model_output, t_batch, sample)
        abar_t = self.alphas_cumprod[t].item()
        abar_prev = self.alphas_cumprod[t - 1].item() if t > 0 else 1.0
        noise = self._noise_like(sample, generator) if t > 0 else None
        return ancestral_step(x0, sample, abar_t, abar_prev, self.variance, noise), x0


class DDIMScheduler(Scheduler):
    """DDIM (Song et al. 2021) on an evenly strided subset of the training steps.

    ``eta=0`` is deterministic; ``eta=1`` is ancestral sampling with the posterior variance
    beta-tilde over the strided steps (with all steps: DDPM). ``variance="large"`` is ancestral
    sampling with variance beta over the strided steps instead (eta must then be 1): with 50 steps
    and an exact denoiser it keeps 0.96-1.06 of the std of Gaussian data of std 0.2-4 where eta 1
    keeps 0.80-0.95 (``tests/test_schedulers.py``).
    """

    def __init__(self, *args, eta: float = 1.0, variance: str = "small", **kwargs):
        super().__init__(*args, **kwargs)
        if eta < 0:
            raise ValueError(f"eta must be >= 0; got {eta}.")
        if check_variance(variance) in ("large", "gaussian_posterior") and eta != 1:
            raise ValueError(f"variance {variance!r} is ancestral sampling (eta 1); got eta {eta}. Set eta to 1 or variance "
                             "to 'small'.")
        self.eta = eta
        self.variance = variance
        self.prior: GaussianPrior | None = None  # variance "gaussian_posterior"
        self.set_timesteps(50 if self.n_train_steps >= 50 else self.n_train_steps)

    @classmethod
    def from_scheduler(cls, scheduler: Scheduler, timesteps: list[int], eta: float = 0.0) -> "DDIMScheduler":
        """A DDIM sampler with ``scheduler``'s schedule over an explicit list of timesteps (e.g. a
        partial reverse process that starts from t < T, as in reconstruction)."""
        sampler = cls(**scheduler.config, eta=eta)
        if not timesteps or any(not 0 <= t < sampler.n_train_steps for t in timesteps):
            raise ValueError(f"timesteps must be a non-empty list in 0..{sampler.n_train_steps - 1}; got {timesteps}.")
        sampler.timesteps = torch.tensor(sorted(set(timesteps), reverse=True), dtype=torch.long)
        return sampler

    def set_timesteps(self, n_steps: int) -> None:
        if not 1 <= n_steps <= self.n_train_steps:
            raise ValueError(f"DDIM steps must be between 1 and {self.n_train_steps}; got {n_steps}.")
        # "trailing" spacing: the first step is the last training step, where x_T ~ N(0, I) holds
        stride = self.n_train_steps / n_steps
        self.timesteps = torch.tensor([int(round((i + 1) * stride)) - 1 for i in range(n_steps)][::-1], dtype=torch.long)

    def previous_timestep(self, t: int) -> int:
        later = self.timesteps[self.timesteps < t]
        return int(later.max()) if len(later) else -1

    def step(self, model_output, t: int, sample, generator=None):
        t_batch = torch.full((sample.shape[0],), t, device=sample.device, dtype=torch.long)
        x0, eps = self.predict_x0_and_eps(model_output, t_batch, sample)
        prev = self.previous_timestep(t)
        abar_t = self.alphas_cumprod[t].item()
        abar_prev = self.alphas_cumprod[prev].item() if prev >= 0 else 1.0
        if self.variance == "large":
            noise = self._noise_like(sample, generator) if prev >= 0 else None
            return ancestral_step(x0, sample, abar_t, abar_prev, "large", noise), x0
        sigma = self.eta * math.sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
        direction = math.sqrt(max(1 - abar_prev - sigma ** 2, 0.0)) * eps
        prev_sample = math.sqrt(abar_prev) * x0 + direction
        if sigma > 0:
            prev_sample = prev_sample + sigma * self._noise_like(sample, generator)
        if self.variance == "gaussian_posterior":
            prev_sample = prev_sample + self.x0_uncertainty(sample, abar_t, abar_prev, sigma, generator)
        return prev_sample, x0

    def set_gaussian_prior(self, mask, covariance, temporal=None, basis=None) -> None:
        """Variance ``gaussian_posterior``: the spatial covariance ``(V, V)`` of the data around their
        category means over the ``mask``'s V voxels (e.g. Ledoit-Wolf on the training runs) and, if
        given, the temporal correlation ``(V, T, T)`` of each component along ``basis``'s columns
        (:class:`~modalmerge.diffusion.posterior_noise.GaussianPrior`)."""
        self.prior = GaussianPrior(mask, covariance, temporal, basis)

    def x0_uncertainty(self, sample, abar_t: float, abar_prev: float, sigma: float, generator):
        """The noise a step leaves out when it plugs in the network's guess of x0: the step's mean is
        linear in x0 with coefficient ``c``, so the exact reverse step of Gaussian data adds c^2 times
        the posterior covariance of x0 given x_t (DDIM's noise alone is exact only for a single data
        point), drawn with the prior's correlations instead of white."""
        if self.prior is None:
            raise ValueError("variance 'gaussian_posterior' needs set_gaussian_prior() before sampling.")
        c = math.sqrt(abar_prev) - math.sqrt(max(1 - abar_prev - sigma ** 2, 0.0)) * math.sqrt(abar_t / (1 - abar_t))
        return self.prior.posterior_noise(sample, c, abar_t / (1 - abar_t), generator)


def make_sampler(name: str, scheduler_config: dict, steps: int | None = None, eta: float = 1.0,
                 variance: str = "small") -> Scheduler:
    """``ddpm`` or ``ddim`` with the training schedule of ``scheduler_config``."""
    if name == "ddpm":
        sampler = DDPMScheduler(**scheduler_config, variance=variance)
        sampler.set_timesteps(None)
        return sampler
    if name == "ddim":
        sampler = DDIMScheduler(**scheduler_config, eta=eta, variance=variance)
        sampler.set_timesteps(steps or 50)
        return sampler
    raise ValueError(f"sampler must be one of ddpm, ddim; got {name!r}.")
