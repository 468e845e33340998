"""Is the trained network a better model of normal fMRI than a Gaussian? Held-out denoising error of the
network against the exact denoiser of a Gaussian fitted to the same training runs (development split).

    python bench/wiener_vs_network.py DEV_FOLDER [DEV_FOLDER ...] --out bench/results/wiener_vs_network_dev.json

For Gaussian data N(mu_c, S) (mu_c the training runs' mean of category c, S the Ledoit-Wolf covariance
of the training volumes around their category means) the posterior mean of x0 given x_t is
mu_c + S (S + lambda_t I)^(-1) (x_t / sqrt(abar_t) - mu_c), lambda_t = (1 - abar_t) / abar_t: the
Wiener filter, with no parameters learnt beyond mu and S. Each folder's held-out run (run 9) is cut into
non-overlapping clips of the model's length; each clip is noised to t with one shared noise draw
(seed 0) and denoised by both, conditioned on its design labels; the error is the mean squared error of
x0's estimate over the mask (z units^2). If the network's error is above the Wiener filter's, the network
knows less about normal volumes than their mean and covariance do, and any detector that reads normality
off the network starts behind the Gaussian (the ridge-whitened z-score) detectors. Also: the network
with its labels replaced by the null label (unconditional) and the Wiener filter with the global mean.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.analysis.generator_baselines import within_category_covariance  # noqa: E402
from modalmerge.data.clips import make_clips  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402

LEVELS = (25, 50, 100, 200, 300, 500, 700)


def wiener_parts(data: PreparedData, inside: np.ndarray):
    train = np.isin(data.runs, data.train_runs)
    X = data.X[train][:, inside].astype(np.float64)
    labels = data.label_ids[train]
    means = {int(c): X[labels == c].mean(0) for c in np.unique(labels)}
    values, basis = np.linalg.eigh(within_category_covariance(X, labels))
    return means, X.mean(0), np.clip(values, 0, None), basis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = []
    for folder in args.folders:
        data = PreparedData.load(folder / "results/prep/sub001/volumes.npz")
        diffusion, _ = load_diffusion(folder / "results/model/sub001/model.pt", torch.device("cpu"))
        inside = data.mask.astype(bool)
        means, global_mean, values, basis = wiener_parts(data, inside)
        length = diffusion.network.clip_length if hasattr(diffusion.network, "clip_length") else 8
        clips, labels, _, _ = make_clips(data.X, data.label_ids, data.runs, data.test_runs, length, stride=length)
        x0 = torch.as_tensor(clips)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)) * diffusion.mask
        flat = clips[:, :, inside].astype(np.float64)
        mu = np.stack([[means[int(c)] for c in row] for row in labels])
        row = {"folder": str(folder), "n_clips": len(clips), "clip_length": length, "levels": {}}
        for t in LEVELS:
            t_batch = torch.full((len(x0),), t, dtype=torch.long)
            x_t = diffusion.scheduler.add_noise(x0, noise, t_batch) * diffusion.mask
            abar = float(diffusion.scheduler.alphas_cumprod[t])
            lam = (1 - abar) / abar
            y = x_t[:, :, torch.as_tensor(inside)].double().numpy() / np.sqrt(abar)
            errors = {}
            for name, centre in (("wiener", mu), ("wiener_global_mean", global_mean)):
                estimate = centre + ((y - centre) @ basis * (values / (values + lam))) @ basis.T
                errors[name] = float(((estimate - flat) ** 2).mean())
            errors["identity"] = float(((y - flat) ** 2).mean())  # x_t / sqrt(abar): no denoising at all
            with torch.no_grad():
                for name, lab in (("network", torch.as_tensor(labels)),
                                  ("network_unconditional", torch.full_like(torch.as_tensor(labels), diffusion.null_label))):
                    out = diffusion.network(x_t, t_batch, lab).float()
                    x0_hat, _ = diffusion.scheduler.predict_x0_and_eps(out, t_batch, x_t)
                    errors[name] = float(((x0_hat[:, :, torch.as_tensor(inside)].double().numpy() - flat) ** 2).mean())
            row["levels"][t] = {"lambda": lam, **errors}
            print(f"{folder.parent.name}/{folder.name} t={t} lambda={lam:.3g}: " + ", ".join(f"{k} {v:.4f}" for k, v in errors.items()), flush=True)
        runs.append(row)
    args.out.write_text(json.dumps({"runs": runs, "rules": __doc__}, indent=2))


if __name__ == "__main__":
    main()
