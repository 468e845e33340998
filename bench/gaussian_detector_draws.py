"""Exploration on the development split (may choose): how the reconstruction detector's settings and noise
draws move its pooled AUROC when the model is its Gaussian (the default's network adds nothing measurable to
it, bench/README 41, so this costs seconds instead of the network's minutes).

    python bench/gaussian_detector_draws.py DEV_FOLDER --draw-seeds 0 1 2 3 4 --out bench/results/gaussian_detector_draws_dev.json

Variants ``t{t} s{steps} d{draws} {residual|recon}`` (``recon``: the draws' reconstructions averaged before
the residual is squared), calibrated on the workflow's 48 training-run clips or, ``all``, on every
training-run clip; ridge_whitened_z beside them. Exploration only: a setting found here becomes the
workflow's only through a rule written before it is measured on trained models.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from detector_cost import RidgeInverseDetector, WhitenedDetector, detector_entry, development_inputs, fit_and_score  # noqa: E402
from temporal_gaussian import gaussians  # noqa: E402
from modalmerge.analysis.detectors import classical_detectors  # noqa: E402
from modalmerge.analysis.diffusion_detector import DiffusionDetector  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision  # noqa: E402
from modalmerge.stages.anomalies import calibration_clips  # noqa: E402

VARIANTS = {  # name: (t, steps, draws, average, calibration); average "whitened": WhitenedDetector
    "t200 s2 d2 residual": (200, 2, 2, "residual", "workflow"),
    "t200 s1 d4 residual": (200, 1, 4, "residual", "workflow"),
    "t200 s2 d2 recon": (200, 2, 2, "reconstruction", "workflow"),
    "t200 s1 d4 recon": (200, 1, 4, "reconstruction", "workflow"),
    "t200 s2 d8 residual": (200, 2, 8, "residual", "workflow"),
    "t200 s2 d2 residual all": (200, 2, 2, "residual", "all"),
    "t200 s1 d4 recon all": (200, 1, 4, "reconstruction", "all"),
    "t100 s1 d4 recon": (100, 1, 4, "reconstruction", "workflow"),
    "t300 s1 d4 recon": (300, 1, 4, "reconstruction", "workflow"),
    "t500 s1 d4 recon": (500, 1, 4, "reconstruction", "workflow"),
}
WHITENED = {  # fifteenth session: the residual ZCA-whitened (bench/README 27, old network) on the default's Gaussian
    "t200 s1 d4 residual": (200, 1, 4, "residual", "workflow"),
    "t200 s1 d4 whitened": (200, 1, 4, "whitened", "workflow"),
    "t200 s2 d2 whitened": (200, 2, 2, "whitened", "workflow"),
    "t100 s1 d4 whitened": (100, 1, 4, "whitened", "workflow"),
    "t300 s1 d4 whitened": (300, 1, 4, "whitened", "workflow"),
    "t200 s1 d4 whitened all": (200, 1, 4, "whitened", "all"),
}
LIMIT = {  # fifteenth session: for a Gaussian denoiser the expected squared residual of one DDIM step from t is
    # (lambda_t (S + lambda_t I)^(-1) (x - mu))^2 plus a constant per voxel: the ridge-inverse z at lambda_t
    # (bench/detector_cost.py), reached as the draws grow. "ridge-inverse t" is that classical detector, no draw.
    "t200 s1 d4 residual": (200, 1, 4, "residual", "workflow"),
    "t200 s1 d64 residual": (200, 1, 64, "residual", "workflow"),
    "t200 ridge-inverse": (200, 0, 0, "ridge-inverse", "classical"),
    "t500 s1 d64 residual": (500, 1, 64, "residual", "workflow"),
    "t500 ridge-inverse": (500, 0, 0, "ridge-inverse", "classical"),
}
SETS = {"draws": VARIANTS, "whitened": WHITENED, "limit": LIMIT}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--draw-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--set", choices=sorted(SETS), default="draws")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config, injected, data, clips, labels, design = development_inputs(args.folder)
    diffusion, meta = load_diffusion(args.folder / "results/model/sub001/model.pt", torch.device("cpu"))
    gaussian = gaussians(diffusion, data, meta["train_runs"], kinds=("spatial",))["spatial"]
    cfg = dict(config["anomalies"])
    precision = inference_precision(torch.device("cpu"), config["train"].get("inference_precision", "auto"))
    picks = {"workflow": calibration_clips(len(clips), cfg), "all": np.arange(len(clips)), "classical": None}
    abar = diffusion.scheduler.alphas_cumprod.double()
    runs = {"ridge_whitened_z": fit_and_score(classical_detectors(data.mask, 0)["ridge_whitened_z"], None, clips, labels,
                                              injected, design, data.mask, cfg, precision)}
    out = {"ridge_whitened_z": {"auroc": runs["ridge_whitened_z"]["auroc"]}, "variants": {}}
    for name, (t, steps, draws, average, calibration) in SETS[args.set].items():
        rows = []
        for seed in args.draw_seeds:
            if average == "ridge-inverse":  # deterministic: one "draw" is all there is
                if rows:
                    break
                detector = RidgeInverseDetector(data.mask, float((1 - abar[t]) / abar[t]))
            elif average == "whitened":
                detector = WhitenedDetector(data.mask, gaussian, t, steps, draws, seed=seed)
            else:
                detector = DiffusionDetector(data.mask, gaussian, t, steps, draws, seed=seed, average=average)
            r = fit_and_score(detector, picks[calibration], clips, labels, injected, design, data.mask, cfg, precision)
            rows.append(detector_entry(r, cfg["default_strengths"]))
        aurocs = np.array([row["auroc"] for row in rows])
        sd = float(aurocs.std(ddof=1)) if len(aurocs) > 1 else 0.0
        out["variants"][name] = {"draws": rows, "auroc_mean": float(aurocs.mean()), "auroc_sd": sd}
        print(f"{name}: {aurocs.mean():.3f} +- {sd:.3f} ({', '.join(f'{a:.3f}' for a in aurocs)})", flush=True)
    print(f"ridge_whitened_z: {out['ridge_whitened_z']['auroc']:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
