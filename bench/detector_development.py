"""Anomaly detectors compared on the development split (may choose): run 9 plays the held-out run,
runs 10-12 are left out, the model was trained on runs 1-8.

    python bench/ablation.py --variants bench/ablation_precision_cpu.yaml --only float32_training --select --seeds 0
    python bench/detector_development.py bench/results/ablation/float32_training/seed-0

The folder's workflow is taken up to ``inject_synthetic_anomalies`` (anomalies injected into run 9's
clips), then every classical detector, the workflow's diffusion detector (SDEdit reconstruction) and
a multiscale score detector are scored on them: the model's noise estimate at each clip's
noiseless point sqrt(abar_t) x0 for timesteps t (no noise drawn, one forward pass per t; for
Gaussian data a whitened residual from the category's expected image), standardised voxelwise on
training-run clips, root mean square over t, smoothed, largest voxel. Prints pooled and per-type
AUROC at the default strengths; nothing here is written into the workflow.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.analysis.detectors import ClipDetector, classical_detectors, frame_max, smooth  # noqa: E402
from modalmerge.analysis.diffusion_detector import DiffusionDetector  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import inference_precision  # noqa: E402
sys.path.insert(0, str(REPO / "bench"))
from detector_cost import development_inputs, fit_and_score  # noqa: E402


class ScoreDetector(ClipDetector):
    """Multiscale score detector (see the module docstring), through the model's public methods."""

    def __init__(self, mask=None, diffusion=None, timesteps=(20, 50, 100), smoothing: float = 1.0, batch_size: int = 64):
        super().__init__(mask)
        self.diffusion, self.timesteps, self.smoothing, self.batch_size = diffusion, timesteps, smoothing, batch_size

    @torch.no_grad()
    def estimates(self, clips, design):
        scheduler = self.diffusion.scheduler
        out = np.zeros((len(self.timesteps), *clips.shape), np.float32)
        for s in range(0, len(clips), self.batch_size):
            x0 = torch.as_tensor(clips[s:s + self.batch_size])
            labels = torch.as_tensor(design[s:s + self.batch_size], dtype=torch.long)
            for i, t in enumerate(self.timesteps):
                t_batch = torch.full((len(x0),), int(t), dtype=torch.long)
                x_t = scheduler.alphas_cumprod[t].float().sqrt() * x0
                _, eps = scheduler.predict_x0_and_eps(self.diffusion.guided_output(x_t, t_batch, labels), t_batch, x_t)
                out[i, s:s + self.batch_size] = eps.float().numpy()
        return out * self.mask_

    def _fit(self, clips, design):
        estimates = self.estimates(clips, design)
        self.mean_, self.std_ = estimates.mean(axis=(1, 2)), np.maximum(estimates.std(axis=(1, 2)), 1e-6)

    def _maps(self, clips, design):
        z = (self.estimates(clips, design) - self.mean_[:, None, None]) / self.std_[:, None, None]
        return smooth(np.sqrt((z ** 2).mean(axis=0)) * self.mask_, self.mask_, self.smoothing)

    def _clip_scores(self, clips, maps):
        return frame_max(maps, self.mask_)


def main() -> None:
    folder = Path(sys.argv[1]).resolve()
    config, injected, data, clips, labels, design = development_inputs(folder)
    defaults = config["anomalies"]["default_strengths"]
    diffusion, _ = load_diffusion(folder / "results/model/sub001/model.pt", torch.device("cpu"))
    precision = inference_precision(torch.device("cpu"), "auto")
    calibration = np.random.default_rng(0).choice(len(clips), 48, replace=False)
    detectors = {name: (d, None) for name, d in classical_detectors(data.mask, 0).items()}
    detectors["diffusion (workflow: t 200, 2 steps, 2 draws)"] = (DiffusionDetector(data.mask, diffusion, 200, 2, 2), calibration)
    for timesteps in [(20, 50, 100), (50,), (100,), (200,), (10, 25, 50, 100, 200, 400)]:
        detectors[f"score t={timesteps}"] = (ScoreDetector(data.mask, diffusion, timesteps), np.arange(len(clips)))
    print(f"development split: held-out run {data.test_runs}, training runs {data.train_runs}; {precision} inference")
    print("| detector | pooled | " + " | ".join(defaults) + " | blob voxel AUPRC | seconds |")
    print("|---|---|" + "---|" * len(defaults) + "---|---|")
    for name, (detector, pick) in detectors.items():
        started = time.perf_counter()
        r = fit_and_score(detector, pick, clips, labels, injected, design, data.mask, config["anomalies"], precision)
        print(f"| {name} | {r['auroc']:.3f} | " + " | ".join(f"{r['by_type'][k]['auroc']:.2f}" for k in defaults)
              + f" | {r['by_type']['blob'].get('voxel_auprc', float('nan')):.3f} | {time.perf_counter() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
