"""The diffusion detector's cost against its accuracy, on the development split (may choose).

    python bench/detector_cost.py DEV_FOLDER [DEV_FOLDER ...] --out bench/results/detector_cost_dev.json
    python bench/detector_cost.py DEV_FOLDER [...] --experiment draws --out bench/results/detector_draws_dev.json

Each folder is a development-split workflow folder (``bench/ablation.py --select``: the model trained
on runs 1-8, run 9 plays the held-out run, runs 10-12 are left out). Its workflow is taken up to
``inject_synthetic_anomalies`` (anomalies injected into run 9's clips at the configured strengths);
then the diffusion detector is scored in the variants below, with the calibration clips of the
score stage (``anomalies.diffusion.calibration_clips`` training-run clips, drawn with
``anomalies.seed``) and the workflow's inference precision. Forward passes per clip = steps x draws
(x noise levels).

Experiment ``cost`` (the default). Variants, fixed before any was run:
- ``t200 s2 d2``: the workflow's (reconstruction from t = 200, 2 DDIM steps, 2 noise draws), 4 forwards;
- ``t200 s1 d2``, ``t200 s2 d1``: 2 forwards; ``t200 s1 d1``: 1 forward;
- ``t100+200+400 s1 d1``: reconstruction from three noise levels, one step and one draw each, the
  voxelwise standardised residual maps averaged over levels before smoothing (a multi-level
  ensemble after AnoDDPM / pDDPM), 3 forwards.

Rules, written before the first run (seeds = the folders given, 0-2):
- speed: the cheapest of the 1- and 2-forward variants whose paired difference to the workflow's
  (variant - workflow, per seed) has mean >= -sd, for the pooled clip AUROC and for the blob voxel
  AUPRC, replaces the workflow's settings; if none qualifies, the settings stay;
- quality: the multi-level variant replaces the workflow's if its pooled AUROC's paired difference
  has mean > sd (an improvement beyond its spread) and no type's AUROC falls by more than 0.05 on
  average.

Experiment ``draws``, written after ``cost`` had shown that the second noise draw is worth 0.087 of
pooled AUROC at 2 steps and before any of these was run. Averaging the squared residual over draws
leaves the re-injected sampling noise in every term; averaging the reconstructions first
(``average="reconstruction"``) removes it before squaring. Variants (t = 200 throughout):
``s2 d2`` (the workflow's, 4 forwards), ``s1 d4`` (4), ``s2 d2 mean recon`` (4), ``s1 d4 mean recon``
(4), and, measured to draw the curve and not to be adopted (twice the cost), ``s2 d4 mean recon``
(8) and ``s1 d8 mean recon`` (8). Rule: among the 4-forward variants, the one with the largest mean
paired pooled-AUROC improvement over the workflow's replaces its settings if that improvement's
mean > its sd and its blob voxel AUPRC's paired difference has mean >= -sd; otherwise they stay.

Experiment ``temporal``, written after ``draws`` and before any of these was run (the generation
and detection issues' untried directions: temporal inpainting and an ELBO-style denoising error).
Variants, each 4 forwards per clip like the workflow's, one noise draw:
- ``inpaint t200 s2``: every volume predicted from its neighbours only: the clip's even frames are
  hidden (started from noise alone at t = 200) and inferred from the odd ones by replacement
  inpainting (``GaussianDiffusion.inpaint_frames``, 2 DDIM steps), then the odd from the even;
  the squared residual of the inferred frames is scored like the workflow's (calibrated voxelwise
  on the calibration clips, smoothed, largest voxel). On a known repeated-frame process an exact
  denoiser fills hidden frames to a correlation of 0.92 with 2 steps from t = 200 and 0.74 from
  t = 400 (tests/test_detectors.py's oracle; computed before this run);
- ``inpaint t400 s2``: the same from t = 400;
- ``error t50+100+200+400``: the per-voxel denoising error (``denoising_error_map``) at four noise
  levels, each standardised voxelwise on the calibration clips, averaged over the levels, smoothed,
  largest voxel (an ELBO-style score: the terms of the variational bound are such errors);
- each of the three on the untrained model (``untrained_control``), named ``... untrained``.
Rule: a variant replaces the workflow's detector if, paired by model seed, its pooled AUROC minus
the workflow's has mean > sd, its blob voxel AUPRC minus the workflow's has mean >= -sd, and its
pooled AUROC minus its own untrained control's has mean > sd (training must be what helps); of
several, the largest mean pooled gain. Seeds: the folders given (the four development-split v
models of bench/README section 21's confirmation, seeds 3-6; the three of section 15 are gone).

Experiment ``temporal_model``: the inpainting variants and their untrained twins on models with
temporal layers at every level (``bench/ablation_temporal_detector_cpu.yaml``, whose header states
its rule, committed before it was trained); the decision printed is the ``temporal`` rule's.

Experiment ``whitened`` (sixth session, 2026-11-28), written before any of these was run, after the
diffusion classifier gained 12.5 points on this split by judging residuals in their own metric
(bench/README section 27). Variants:
- ``t200 s2 d2 whitened``: the workflow's reconstruction residual vectors (same draws), ZCA-whitened
  per frame by the Ledoit-Wolf covariance of the calibration clips' residuals before they are
  squared; then averaged over draws, standardised voxelwise on the calibration clips, smoothed,
  largest voxel, like the workflow's (no extra forward pass);
- ``t200 s2 d2 untrained`` and ``t200 s2 d2 whitened untrained``: both on the untrained model;
- reported, never adopted: ``whitened z max`` / ``whitened z smoothed``, classical detectors that
  whiten each volume's deviation from the training mean with the Ledoit-Wolf covariance of the
  training volumes (|value|, largest voxel, without and with the smoothing of ``zscore_smoothed``),
  so that any gain of the whitened diffusion detector is read against whitening alone.
The decision is the ``temporal`` rule: paired by model seed, pooled AUROC minus the workflow's mean >
sd, blob voxel AUPRC minus the workflow's mean >= -sd, and pooled AUROC minus its own untrained twin's
mean > sd. Run once per noise-draw seed (``--draw-seed 0 1 2``) on the development models of seeds
3-6; the rule is read on the mean over draws (``bench/detector_draws_summary.py``).

Experiment ``ridge`` (same session, after ``whitened`` had shown its untrained twin at 0.726): is the
noise of that untrained procedure needed, or is it a ridge-whitened z-score? Deterministic classical
variants, written before they were run and reported only (nothing is adopted from them this session):
``ridge-whitened z, lambda L`` for L = 0, 1.91 (= abar / (1 - abar) at t = 200, the ridge the untrained
procedure's residual covariance carries) and 4: each volume's deviation from the training mean,
whitened by (Ledoit-Wolf covariance of the training volumes + L I)^(-1/2), squared, standardised
voxelwise on the training clips, smoothed (sigma 1), largest voxel; beside the workflow's detector.

Experiment ``ridge_grid`` (seventh session, 2026-11-28), written before it was run: the ridge-whitened
z-score becomes a classical detector of the workflow (``ridge_whitened_z``, the diffusion detector's
strongest rival), and its lambda (``anomalies.ridge_whitened_lambda``) is chosen here, on run 9 of the
development split: lambda in 0, 0.5, 1, 2, 4, 8, 16; the largest pooled AUROC; of the lambdas within
0.005 of it, the one with the largest blob voxel AUPRC. The detector is deterministic and does not use
the model, so one development folder decides (the injected clips are the same in every folder); the
comparison is against max-z (``zscore_max``), and no diffusion detector is run.

Experiment ``ridge_grid_wide``, written after ``ridge_grid`` chose lambda 16, the largest of its grid
(pooled AUROC rose with lambda throughout): the same rule on the grid extended by 32, 64, 128 and 256
(as lambda grows the whitening fades into a plain squared z-score). Its choice is the default.

Experiment ``score`` (thirteenth session, 2026-11-29), written before any of these was run. Every
diffusion detector so far scored a *reconstruction* and lost to its untrained twin, because the trained
model reconstructs the anomaly too (sections 20-24). A different use of the model: its noise
prediction itself, deterministic (no noise draw). For Gaussian data N(mu, S) the ideal network's
eps-prediction at the noise-free input sqrt(abar_t) x0 is proportional to (S + lambda_t I)^(-1) (x0 - mu),
lambda_t = (1 - abar_t) / abar_t: a ridge-regularised whitening whose ridge is set by t, from the
model's own knowledge of the covariance (and of the category means, through its labels); the
untrained model's is proportional to x0 (a squared z-score). Variants (map = the squared eps-prediction
per voxel, standardised voxelwise on the calibration clips, smoothed (sigma 1), largest voxel, like
the workflow's):
- ``score t100`` / ``score t300`` / ``score t500``: eps-prediction at sqrt(abar_t) x0, 1 forward
  (lambda_t = 0.12, 1.54, 11.9; the classical ridge-whitened z chose lambda 16);
- ``score t300 inverted``: x0 taken to t = 300 by deterministic DDIM inversion (forwards at t = 0 and
  150), then its eps-prediction there, 3 forwards (for Gaussian data: (S (1 + S / lambda_t))^(-1/2) (x0 - mu));
- each on the untrained model (``... untrained``);
- reported, never adopted: ``ridge-inverse z, lambda L`` for the three lambda_t above, the classical
  detector the ideal network of a Gaussian world would be (Ledoit-Wolf covariance of the training
  volumes), so any gain is read against the Gaussian version of itself.
Rule: the ``temporal`` rule (pooled AUROC minus the workflow's mean > sd, blob voxel AUPRC minus the
workflow's mean >= -sd, pooled AUROC minus its own untrained twin's mean > sd; of several, the largest
pooled gain), on the development models of seeds 7-9 (default configuration, runs 1-8, run 9 held
out), the config's noise draws for the workflow's detector (the new variants draw no noise). Also
reported: each variant minus ``ridge_whitened_z`` (the target). If one is adopted it is then scored,
unchanged, on the test runs with the default models of seeds 0-2.

The test runs 10-12 are never touched here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.covariance import LedoitWolf

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.analysis.anomaly_metrics import evaluate_detector  # noqa: E402
from modalmerge.analysis.detectors import (ClipDetector, RidgeWhitenedDetector, classical_detectors, frame_max,  # noqa: E402
                                          smooth, zca)
from modalmerge.analysis.diffusion_detector import DiffusionDetector, untrained_control  # noqa: E402
from modalmerge.data.clips import make_clips  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision, model_autocast  # noqa: E402
from modalmerge.stages.anomalies import calibration_clips  # noqa: E402

EXPERIMENTS = {  # name: (noise levels, DDIM steps, draws, what is averaged over draws)
    "cost": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        "t200 s1 d2": ((200,), 1, 2, "residual"),
        "t200 s2 d1": ((200,), 2, 1, "residual"),
        "t200 s1 d1": ((200,), 1, 1, "residual"),
        "t100+200+400 s1 d1": ((100, 200, 400), 1, 1, "residual"),
    },
    "draws": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        "t200 s1 d4": ((200,), 1, 4, "residual"),
        "t200 s2 d2 mean recon": ((200,), 2, 2, "reconstruction"),
        "t200 s1 d4 mean recon": ((200,), 1, 4, "reconstruction"),
        "t200 s2 d4 mean recon": ((200,), 2, 4, "reconstruction"),
        "t200 s1 d8 mean recon": ((200,), 1, 8, "reconstruction"),
    },
    "temporal": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        "inpaint t200 s2": ((200,), 2, 1, "inpaint"),
        "inpaint t400 s2": ((400,), 2, 1, "inpaint"),
        "error t50+100+200+400": ((50, 100, 200, 400), 1, 1, "error"),
        "inpaint t200 s2 untrained": ((200,), 2, 1, "inpaint untrained"),
        "inpaint t400 s2 untrained": ((400,), 2, 1, "inpaint untrained"),
        "error t50+100+200+400 untrained": ((50, 100, 200, 400), 1, 1, "error untrained"),
    },
    "temporal_model": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        "inpaint t200 s2": ((200,), 2, 1, "inpaint"),
        "inpaint t400 s2": ((400,), 2, 1, "inpaint"),
        "inpaint t200 s2 untrained": ((200,), 2, 1, "inpaint untrained"),
        "inpaint t400 s2 untrained": ((400,), 2, 1, "inpaint untrained"),
    },
    "whitened": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        "t200 s2 d2 whitened": ((200,), 2, 2, "whitened"),
        "t200 s2 d2 untrained": ((200,), 2, 2, "residual untrained"),
        "t200 s2 d2 whitened untrained": ((200,), 2, 2, "whitened untrained"),
        "whitened z max": ((), 0, 0, "classical whitened 0"),
        "whitened z smoothed": ((), 0, 0, "classical whitened 1"),
    },
    "ridge": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        "ridge-whitened z, lambda 0": ((), 0, 0, "classical ridge 0"),
        "ridge-whitened z, lambda 1.91": ((), 0, 0, "classical ridge 1.91"),
        "ridge-whitened z, lambda 4": ((), 0, 0, "classical ridge 4"),
    },
    "ridge_grid": {f"ridge-whitened z, lambda {lam:g}": ((), 0, 0, f"classical ridge {lam:g}")
                   for lam in (0, 0.5, 1, 2, 4, 8, 16)},
    "ridge_grid_wide": {f"ridge-whitened z, lambda {lam:g}": ((), 0, 0, f"classical ridge {lam:g}")
                        for lam in (0, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256)},
    "score": {
        "t200 s2 d2": ((200,), 2, 2, "residual"),
        **{f"score t{t}": ((t,), 0, 1, "score") for t in (100, 300, 500)},
        "score t300 inverted": ((300,), 2, 1, "score inverted"),
        **{f"score t{t} untrained": ((t,), 0, 1, "score untrained") for t in (100, 300, 500)},
        "score t300 inverted untrained": ((300,), 2, 1, "score inverted untrained"),
        **{f"ridge-inverse z, lambda {lam}": ((), 0, 0, f"classical inverse {lam}") for lam in ("0.117", "1.54", "11.9")},
    },
}


class WhitenedDetector(DiffusionDetector):
    """The workflow's reconstruction detector with each frame's residual vector ZCA-whitened by the
    Ledoit-Wolf covariance of the calibration clips' residuals before it is squared."""

    def _vectors(self, clips, design):
        """Per draw, the masked residual vectors ``(draws, n, T, V)`` (the parent's noise draws)."""
        generator = torch.Generator().manual_seed(self.seed)
        inside = self.diffusion.mask.bool()
        out = np.zeros((self.n_draws, *clips.shape[:2], int(inside.sum())), np.float32)
        for d in range(self.n_draws):
            for rows, x0, labels, noise in self.batches(clips, design, generator):
                x = self.diffusion.reconstruct(x0, labels, self.t_start, self.steps, noise)
                out[d, rows] = (x - x0)[:, :, inside].float().cpu().numpy()
        return out

    def residuals(self, clips, design=None):
        vectors = self._vectors(clips, design) @ self.whitener_
        out = np.zeros(clips.shape, np.float32)
        out[:, :, self.diffusion.mask.bool().cpu().numpy()] = (vectors ** 2).mean(axis=0)
        return out

    def _fit(self, clips, design):
        self.whitener_ = zca(self._vectors(clips, design).reshape(-1, int(self.diffusion.mask.sum())))
        super()._fit(clips, design)


class WhitenedZDetector(ClipDetector):
    """Classical: |deviation from the training mean|, ZCA-whitened by the Ledoit-Wolf covariance of the
    training volumes, optionally smoothed; the clip's largest voxel."""

    def __init__(self, mask=None, smoothing: float = 0.0):
        super().__init__(mask)
        self.smoothing = smoothing

    def _fit(self, clips, design):
        volumes = clips.reshape(-1, *clips.shape[2:])[:, self.mask_]
        self.mean_ = volumes.mean(0)
        self.whitener_ = zca(volumes - self.mean_)

    def _maps(self, clips, design):
        maps = np.zeros(clips.shape, np.float32)
        maps[:, :, self.mask_] = np.abs((clips[:, :, self.mask_] - self.mean_) @ self.whitener_)
        return smooth(maps, self.mask_, self.smoothing) if self.smoothing else maps

    def _clip_scores(self, clips, maps):
        return frame_max(maps, self.mask_)


class ScoreDetector(DiffusionDetector):
    """The model's eps-prediction at each clip, deterministic: at the noise-free input sqrt(abar_t) x0
    (``steps`` 0), or at x0 taken to ``t_start`` by ``steps`` DDIM inversion steps; squared per voxel."""

    @torch.no_grad()
    def residuals(self, clips, design=None):
        diffusion, out = self.diffusion, np.zeros(clips.shape, np.float32)
        scheduler = diffusion.scheduler
        levels = [round(i * self.t_start / self.steps) for i in range(self.steps)] + [self.t_start]
        for rows, x0, labels, _ in self.batches(clips, design, torch.Generator().manual_seed(self.seed)):
            at = lambda t: torch.full((len(x0),), t, dtype=torch.long, device=x0.device)  # noqa: E731
            # add_noise with eps = 0 is the noise-free input; with the predicted eps, one DDIM inversion step
            x = scheduler.add_noise(x0, torch.zeros_like(x0), at(self.t_start)) if self.steps == 0 else x0
            for now, later in zip(levels[:-1], levels[1:]) if self.steps else ():
                x0_hat, eps = scheduler.predict_x0_and_eps(diffusion.network(x, at(now), labels).float(), at(now), x)
                x = scheduler.add_noise(x0_hat, eps, at(later))
            _, eps = scheduler.predict_x0_and_eps(diffusion.network(x, at(self.t_start), labels).float(), at(self.t_start), x)
            out[rows] = ((eps * diffusion.mask) ** 2).float().cpu().numpy()
        return out


class RidgeInverseDetector(RidgeWhitenedDetector):
    """Classical: each volume's deviation from the training mean times (Ledoit-Wolf covariance +
    ``ridge`` I)^(-1) (what the ideal network's eps-prediction is for Gaussian data), squared,
    standardised voxelwise on the training clips, smoothed; the clip's largest voxel."""

    def _whitener(self, centred):
        values, basis = np.linalg.eigh(LedoitWolf().fit(centred).covariance_)
        return ((basis / (values + self.ridge)) @ basis.T).astype(np.float32)


class InpaintingDetector(DiffusionDetector):
    """Each frame's squared residual against the model's guess of it from the other frames of its clip
    (even frames from the odd, then the odd from the even; ``GaussianDiffusion.inpaint_frames``)."""

    def residuals(self, clips, design=None):
        frames = torch.arange(clips.shape[1])
        out = np.zeros(clips.shape, np.float32)
        for rows, x0, labels, noise in self.batches(clips, design, torch.Generator().manual_seed(self.seed)):
            for group in range(2):
                hidden = frames % 2 == group
                guess = self.diffusion.inpaint_frames(x0, labels, ~hidden, self.t_start, self.steps, noise)
                residual = ((guess - x0) * self.diffusion.mask) ** 2
                out[rows, hidden.numpy()] = residual[:, hidden].float().cpu().numpy()
        return out


class ErrorMapDetector(DiffusionDetector):
    """The per-voxel denoising error at one noise level ``t_start`` (one noise draw)."""

    def residuals(self, clips, design=None):
        out = np.zeros(clips.shape, np.float32)
        for rows, x0, labels, noise in self.batches(clips, design, torch.Generator().manual_seed(self.seed)):
            t = torch.full((len(x0),), self.t_start, dtype=torch.long, device=x0.device)
            out[rows] = self.diffusion.denoising_error_map(x0, labels, t, noise).float().cpu().numpy()
        return out


class MultiLevelDetector(ClipDetector):
    """Diffusion detectors at several noise levels; their voxelwise standardised residual maps are
    averaged before the smoothing and the frame maximum (through the model's public methods only)."""

    def __init__(self, mask=None, diffusion=None, levels=(100, 200, 400), steps: int = 1, n_draws: int = 1,
                 smoothing: float = 1.0, seed: int = 0, part=DiffusionDetector):
        super().__init__(mask)
        self.diffusion, self.levels, self.steps, self.n_draws = diffusion, levels, steps, n_draws
        self.smoothing, self.seed, self.part = smoothing, seed, part

    def _fit(self, clips, design):
        self.parts_ = [self.part(self.mask, self.diffusion, t, self.steps, self.n_draws, smoothing=0,
                                 seed=self.seed).fit(clips, design) for t in self.levels]

    def _maps(self, clips, design):
        standardised = np.mean([part.score_maps(clips, design) for part in self.parts_], axis=0)
        return smooth(standardised, self.mask_, self.smoothing) if self.smoothing else standardised

    def _clip_scores(self, clips, maps):
        return frame_max(maps, self.mask_)


def development_inputs(folder: Path, development: bool = True) -> tuple:
    """A development-split folder's workflow up to the injected anomalies (run 9), and what the
    detectors need: ``(config, injected, prepared data, training-run clips, their design labels,
    the injected clips' design labels)``. ``development=False`` reads a workflow folder of the
    default split the same way (its held-out runs are only ever measured)."""
    config = yaml.safe_load((folder / "config.yaml").read_text())
    if development:
        assert config["prep"]["split"]["test_runs"] == [9], f"{folder}: not a development-split folder (bench/ablation.py --select)"
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(folder),
                    "--configfile", str(folder / "config.yaml"), "--cores", "2", "results/anomalies/sub001/injected.npz"],
                   check=True, capture_output=True)
    torch.set_num_threads(2)
    injected = dict(np.load(folder / "results/anomalies/sub001/injected.npz"))
    data = PreparedData.load(folder / "results/prep/sub001/volumes.npz")
    length = int(injected["clip_length"])
    clips, labels, _, _ = make_clips(data.X, data.label_ids, data.runs, data.train_runs, length, stride=length)
    design = np.stack([data.label_ids[s:s + length] for s in injected["clip_starts"]])
    return config, injected, data, clips, labels, design


def fit_and_score(detector, pick, clips, labels, injected, design, mask, anomalies: dict, precision: str) -> dict:
    """Fit ``detector`` on the training-run clips (all, label-free, when ``pick`` is None; else the
    ``pick`` clips with their design labels), score the injected clips and evaluate it at the default
    strengths (``evaluate_detector``)."""
    with model_autocast(torch.device("cpu"), precision):
        detector.fit(clips) if pick is None else detector.fit(clips[pick], labels[pick])
        maps = detector.score_maps(injected["clips"], design)
    scores = detector.decision_function(injected["clips"], design, maps=maps)
    return evaluate_detector(scores, maps, injected, mask, anomalies["default_strengths"], anomalies["voxel_fp_rate"])


def detector_entry(r: dict, types, seconds: float | None = None) -> dict:
    """What the bench scripts keep of ``evaluate_detector``'s result ``r``: pooled AUROC, AUROC per type, blob voxel
    AUPRC (and the seconds it took, when given)."""
    entry = {"auroc": r["auroc"], "by_type": {k: r["by_type"][k]["auroc"] for k in types},
             "blob_voxel_auprc": r["by_type"]["blob"].get("voxel_auprc")}
    return entry if seconds is None else {**entry, "seconds": seconds}


def score_folder(folder: Path, variants: dict, draw_seed: int | None = None) -> dict:
    config, injected, data, clips, labels, design = development_inputs(folder)
    cfg = dict(config["anomalies"])
    if draw_seed is not None:  # the diffusion detectors' noise draws only; the injected clips stay
        cfg["seed"] = draw_seed
    defaults = cfg["default_strengths"]
    diffusion, _ = load_diffusion(folder / "results/model/sub001/model.pt", torch.device("cpu"))
    precision = inference_precision(torch.device("cpu"), config["train"].get("inference_precision", "auto"))
    calibration = calibration_clips(len(clips), config["anomalies"])  # the workflow's clips, whatever the draws
    detectors = {name: (d, None, 0) for name, d in classical_detectors(data.mask, 0).items()}
    control = untrained_control(diffusion)
    for name, (levels, steps, draws, average) in variants.items():
        model = control if average.endswith(" untrained") else diffusion
        kind = average.removesuffix(" untrained")
        if kind.startswith("classical ridge"):
            detectors[name] = (RidgeWhitenedDetector(data.mask, float(kind.split()[-1])), None, 0)
            continue
        if kind.startswith("classical inverse"):
            detectors[name] = (RidgeInverseDetector(data.mask, float(kind.split()[-1])), None, 0)
            continue
        if kind.startswith("classical whitened"):
            detectors[name] = (WhitenedZDetector(data.mask, float(kind.split()[-1])), None, 0)
            continue
        if kind == "whitened":
            detector = WhitenedDetector(data.mask, model, levels[0], steps, draws, seed=cfg["seed"])
        elif kind.startswith("score"):
            detector = ScoreDetector(data.mask, model, levels[0], steps, 1, seed=cfg["seed"])
        elif kind == "inpaint":
            detector = InpaintingDetector(data.mask, model, levels[0], steps, draws, seed=cfg["seed"])
        elif kind == "error":
            detector = MultiLevelDetector(data.mask, model, levels, 1, 1, seed=cfg["seed"], part=ErrorMapDetector)
        elif len(levels) == 1:
            detector = DiffusionDetector(data.mask, model, levels[0], steps, draws, seed=cfg["seed"], average=kind)
        else:
            detector = MultiLevelDetector(data.mask, model, levels, steps, draws, seed=cfg["seed"])
        passes = 2 if kind == "inpaint" else draws  # inpainting: two groups of hidden frames, one draw
        forwards = steps + 1 if kind.startswith("score") else len(levels) * steps * passes
        detectors[name] = (detector, calibration, forwards)
    out = {"folder": str(folder), "train_seed": config["train"]["seed"], "precision": precision,
           "n_clips": int(len(injected["clips"])), "n_calibration_clips": int(len(calibration)), "detectors": {}}
    for name, (detector, pick, forwards) in detectors.items():
        started = time.perf_counter()
        r = fit_and_score(detector, pick, clips, labels, injected, design, data.mask, cfg, precision)
        out["detectors"][name] = {**detector_entry(r, defaults, time.perf_counter() - started), "forwards_per_clip": forwards}
        print(f"{folder.name}: {name}: AUROC {r['auroc']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    return out


def paired(runs: list[dict], name: str, key, reference: str | None = None) -> dict:
    reference = reference or ("t200 s2 d2" if "t200 s2 d2" in runs[0]["detectors"] else "zscore_max")
    get = (lambda entry: entry[key]) if isinstance(key, str) else key
    values = np.array([get(r["detectors"][name]) for r in runs], float)
    base = np.array([get(r["detectors"][reference]) for r in runs], float)
    diff = values - base
    sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0  # noqa: E731
    return {"mean": float(values.mean()), "sd": sd(values), "difference_mean": float(diff.mean()),
            "difference_sd": sd(diff)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/detector_cost_dev.json")
    parser.add_argument("--experiment", choices=list(EXPERIMENTS), default="cost")
    parser.add_argument("--draw-seed", type=int, default=None,
                        help="seed of the diffusion detectors' noise draws (default: the config's anomalies.seed)")
    args = parser.parse_args()
    variants = EXPERIMENTS[args.experiment]
    runs = [score_folder(folder.resolve(), variants, args.draw_seed) for folder in args.folders]
    names = list(runs[0]["detectors"])
    types = list(runs[0]["detectors"][names[0]]["by_type"])
    summary = {}
    for name in names:
        summary[name] = {"forwards_per_clip": runs[0]["detectors"][name]["forwards_per_clip"],
                         "seconds": [r["detectors"][name]["seconds"] for r in runs],
                         "auroc": paired(runs, name, "auroc"),
                         "blob_voxel_auprc": paired(runs, name, "blob_voxel_auprc"),
                         "by_type": {k: paired(runs, name, lambda e, k=k: e["by_type"][k]) for k in types}}
    ok = lambda s, key: s[key]["difference_mean"] >= -s[key]["difference_sd"]  # noqa: E731
    if args.experiment == "cost":
        speed = [n for n in variants if 0 < summary[n]["forwards_per_clip"] < 4 and len(variants[n][0]) == 1
                 and ok(summary[n], "auroc") and ok(summary[n], "blob_voxel_auprc")]
        multi = summary["t100+200+400 s1 d1"]
        decision = {"speed_choice": min(speed, key=lambda n: summary[n]["forwards_per_clip"], default=None),
                    "multi_level_adopted": bool(multi["auroc"]["difference_mean"] > multi["auroc"]["difference_sd"]
                                                and all(multi["by_type"][k]["difference_mean"] >= -0.05 for k in types))}
    elif args.experiment == "ridge":
        decision = {"adopted": None, "note": "reported only"}
    elif args.experiment in ("ridge_grid", "ridge_grid_wide"):
        best = max(s["auroc"]["mean"] for n, s in summary.items() if n in variants)
        close = [n for n in variants if summary[n]["auroc"]["mean"] >= best - 0.005]
        chosen = max(close, key=lambda n: summary[n]["blob_voxel_auprc"]["mean"])
        decision = {"within_0.005_of_best": close, "adopted": chosen,
                    "ridge_whitened_lambda": float(chosen.rsplit(" ", 1)[-1])}
    elif args.experiment in ("temporal", "temporal_model", "whitened", "score"):
        new = [n for n in variants if n != "t200 s2 d2" and not n.endswith(" untrained")
               and not variants[n][3].startswith("classical")]
        better = lambda s, key: s[key]["difference_mean"] > s[key]["difference_sd"]  # noqa: E731
        controls = {n: paired(runs, n, "auroc", reference=n + " untrained") for n in new}
        passing = [n for n in new if better(summary[n], "auroc") and ok(summary[n], "blob_voxel_auprc")
                   and controls[n]["difference_mean"] > controls[n]["difference_sd"]]
        decision = {"trained_minus_untrained": controls,
                    "adopted": max(passing, key=lambda n: summary[n]["auroc"]["difference_mean"], default=None)}
    else:
        same_cost = [n for n in variants if n != "t200 s2 d2" and summary[n]["forwards_per_clip"] == 4]
        best = max(same_cost, key=lambda n: summary[n]["auroc"]["difference_mean"])
        s_best = summary[best]
        adopted = s_best["auroc"]["difference_mean"] > s_best["auroc"]["difference_sd"] and ok(s_best, "blob_voxel_auprc")
        decision = {"best_same_cost": best, "adopted": best if adopted else None}
    result = {"experiment": args.experiment, "runs": runs, "summary": summary, **decision,
              "rules": __doc__}
    args.out.write_text(json.dumps(result, indent=2))
    print("| detector | forwards / clip | pooled AUROC | vs workflow (paired) | " + " | ".join(types)
          + " | blob voxel AUPRC |")
    print("|---|---|---|---|" + "---|" * len(types) + "---|")
    for name, s in summary.items():
        cells = [name, str(s["forwards_per_clip"] or ""), f"{s['auroc']['mean']:.3f} ± {s['auroc']['sd']:.3f}",
                 f"{s['auroc']['difference_mean']:+.3f} ± {s['auroc']['difference_sd']:.3f}",
                 *(f"{s['by_type'][k]['mean']:.2f}" for k in types), f"{s['blob_voxel_auprc']['mean']:.3f}"]
        print("| " + " | ".join(cells) + " |")
    print(json.dumps(decision))


if __name__ == "__main__":
    main()
