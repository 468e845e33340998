"""A screen, before any model is trained with it: does a Gaussian that knows how each component moves within a
clip (``model.gaussian_baseline_temporal``) denoise held-out volumes and detect anomalies better than the
frame-by-frame Gaussian of the default (``model.gaussian_baseline``)? Development split; may choose.

    python bench/temporal_gaussian.py DEV_FOLDER --draw-seeds 0 1 2 --out bench/results/temporal_gaussian_dev.json

DEV_FOLDER is a development-split folder of the default config (``bench/ablation.py --select``: the model on
runs 1-7, run 8 validation, run 9 held out, runs 10-12 left out). Both Gaussians are fitted as the train
stage fits them (``fit_gaussian_baseline``) on the model's runs (its checkpoint's ``train_runs``) and used
untrained (``untrained_control``: the network's output fixed at 0), because on the default the trained
network adds nothing measurable to its Gaussian (bench/README 41). Both are therefore the same for every
training seed; the spread below is the detectors' noise draws (``--draw-seeds``; the injected clips stay).

Measured:
- held-out denoising error of x0's estimate on run 9 (non-overlapping clips, their design labels, one shared
  noise draw per t, mean over the mask, z units^2) at t = 50-700, spatial and temporal;
- the workflow's detector (reconstruction from t = 200, 2 DDIM steps, 2 draws: ``t200 s2 d2``) on each
  Gaussian, temporal inpainting (``inpaint t200 s2``: each frame guessed from the others of its clip) on the
  temporal one, and ridge_whitened_z (the best classical detector pooled), at the default strengths.

Rule, written before the first run (2026-11-29, fourteenth session): the temporal baseline goes on to a
trained trial (``bench/ablation_gaussian_temporal_cpu.yaml``, seeds 7-9, with its own adoption rule) if,
paired by draw seed, the pooled AUROC of ``t200 s2 d2`` or of ``inpaint t200 s2`` on the temporal Gaussian
minus ``t200 s2 d2`` on the spatial Gaussian has mean > sd, or the temporal Gaussian's held-out denoising
error is at least 2 % below the spatial one's at both t = 200 and t = 300 (the noise levels the detector and
the classifier use). Otherwise it is reported and left as an option.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from detector_cost import InpaintingDetector, detector_entry, development_inputs, fit_and_score  # noqa: E402
from modalmerge.analysis.detectors import classical_detectors  # noqa: E402
from modalmerge.analysis.diffusion_detector import DiffusionDetector, untrained_control  # noqa: E402
from modalmerge.data.clips import make_clips  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.diffusion.gaussian import GaussianDiffusion  # noqa: E402
from modalmerge.diffusion.gaussian_baseline import GaussianBaselineDenoiser  # noqa: E402
from modalmerge.runtime import inference_precision  # noqa: E402
from modalmerge.stages.anomalies import calibration_clips  # noqa: E402
from modalmerge.stages.train import fit_gaussian_baseline  # noqa: E402

LEVELS = (50, 100, 200, 300, 500, 700)


def gaussians(diffusion: GaussianDiffusion, data, runs: list[int], kinds=("spatial", "temporal")) -> dict:
    """The spatial and/or the temporal Gaussian of ``runs`` (``kinds``), each as an untrained model (network output 0)."""
    inner = diffusion.network.network if isinstance(diffusion.network, GaussianBaselineDenoiser) else diffusion.network
    out = {}
    for name in kinds:
        temporal = name == "temporal"
        baseline = GaussianBaselineDenoiser(inner, data.mask, len(data.class_names), diffusion.scheduler, temporal=temporal)
        fit_gaussian_baseline(baseline, data, runs)
        model = GaussianDiffusion(baseline, diffusion.scheduler, diffusion.mask, diffusion.label_dropout,
                                  diffusion.min_snr_gamma, diffusion.context_prob)
        out[name] = untrained_control(model)
    return out


def denoising_errors(models: dict, data) -> dict:
    inside = torch.as_tensor(data.mask.astype(bool))
    some = models["spatial"]
    length = models["temporal"].network.frame_covariance.shape[-1]
    clips, labels, _, _ = make_clips(data.X, data.label_ids, data.runs, data.test_runs, length, stride=length)
    x0, labels = torch.as_tensor(clips), torch.as_tensor(labels)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * some.mask
    out = {}
    for t in LEVELS:
        t_batch = torch.full((len(x0),), t, dtype=torch.long)
        x_t = some.scheduler.add_noise(x0, noise, t_batch) * some.mask
        out[t] = {}
        for name, model in models.items():
            with torch.no_grad():
                x0_hat, _ = model.scheduler.predict_x0_and_eps(model.network(x_t, t_batch, labels), t_batch, x_t)
            out[t][name] = float(((x0_hat - x0)[:, :, inside].double() ** 2).mean())
        print(f"t={t}: " + ", ".join(f"{k} {v:.4f}" for k, v in out[t].items()), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--draw-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config, injected, data, clips, labels, design = development_inputs(args.folder)
    diffusion, meta = load_diffusion(args.folder / "results/model/sub001/model.pt", torch.device("cpu"))
    models = gaussians(diffusion, data, meta["train_runs"])
    result = {"folder": str(args.folder), "fitted_on_runs": meta["train_runs"], "rules": __doc__,
              "denoising_error": denoising_errors(models, data), "draws": {}}
    cfg = dict(config["anomalies"])
    precision = inference_precision(torch.device("cpu"), config["train"].get("inference_precision", "auto"))
    calibration = calibration_clips(len(clips), cfg)
    defaults = cfg["default_strengths"]
    for draw in args.draw_seeds:
        detectors = {
            "t200 s2 d2 spatial": (DiffusionDetector(data.mask, models["spatial"], 200, 2, 2, seed=draw), calibration),
            "t200 s2 d2 temporal": (DiffusionDetector(data.mask, models["temporal"], 200, 2, 2, seed=draw), calibration),
            "inpaint t200 s2 temporal": (InpaintingDetector(data.mask, models["temporal"], 200, 2, 1, seed=draw), calibration),
        }
        if draw == args.draw_seeds[0]:  # no noise draws: once
            detectors["ridge_whitened_z"] = (classical_detectors(data.mask, 0)["ridge_whitened_z"], None)
        result["draws"][draw] = {}
        for name, (detector, pick) in detectors.items():
            started = time.perf_counter()
            r = fit_and_score(detector, pick, clips, labels, injected, design, data.mask, cfg, precision)
            result["draws"][draw][name] = detector_entry(r, defaults, time.perf_counter() - started)
            print(f"draw {draw}: {name}: AUROC {r['auroc']:.3f} ({time.perf_counter() - started:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
