"""Is there structure beyond a mean and a covariance that a model could learn from the training runs?
(bench/README 44; a measurement on the development split: nothing is chosen, runs 10-12 are never read.)

    python bench/beyond_gaussian.py DEV_FOLDER/results/prep/sub001/volumes.npz --out bench/results/beyond_gaussian_dev.json

The default model is the exact denoiser of a Gaussian (category means + Ledoit-Wolf covariance around them) with
an idle network beside it (bench/README 41). Here density models are fitted on the training runs' volumes (all
of them, rest included) and scored by their negative log-likelihood on the held-out run's volumes, in nats per
volume (lower is better), each against the default's Gaussian:

- ``overall mean``: one mean, Ledoit-Wolf covariance (what the category means add);
- ``category means`` (the default's Gaussian, the reference);
- ``+ temporal AR(1)``: the same Gaussian, each eigencomponent an AR(1) process within a run with its lag-1
  autocorrelation from the training runs (what the volumes' order adds: the lag structure the network never
  learnt, section 41);
- ``+ temporal AR(1), top m``: the same with the AR(1) only on the m largest components (the others i.i.d.);
- ``category means, shrinkage a``: the reference's sample covariance shrunk towards its mean eigenvalue by a
  fixed a (Ledoit-Wolf picks its own; this says whether the Gaussian itself is over- or under-fitted);
- ``category covariances``: a Ledoit-Wolf covariance per label (quadratic discriminant's density);
- ``mixture k`` on the top ``--components`` whitened eigencomponents of the reference's residual, k = 1, 2, 4, 8
  full-covariance Gaussians (k = 1 is the same fit with one Gaussian, the fair reference for the mixtures); the
  other components keep the reference's Gaussian. A mixture is the simplest non-Gaussian density; if it does not
  beat one Gaussian on held-out volumes, the non-Gaussian structure is too weak to learn from these runs.

Also reported: the held-out whitened components' excess kurtosis and skewness (0 for Gaussian data), and each
model's training NLL (the gap says how much it overfits).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kurtosis, skew
from sklearn.covariance import LedoitWolf, shrunk_covariance
from sklearn.mixture import GaussianMixture

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.data.dataset import PreparedData  # noqa: E402

LOG_2PI = np.log(2 * np.pi)


def gaussian_nll(residual: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """Per-row negative log-density of ``residual`` (n, d) under N(0, covariance)."""
    values, basis = np.linalg.eigh(covariance)
    z = residual @ basis
    return 0.5 * ((z ** 2 / values).sum(1) + np.log(values).sum() + len(values) * LOG_2PI)


def label_means(labels, fit_labels, fit_X):
    means = {c: fit_X[fit_labels == c].mean(0) for c in np.unique(fit_labels)}
    return np.stack([means[c] for c in labels])


def ar1_nll(components: np.ndarray, runs: np.ndarray, variances: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Per-volume negative log-density of independent AR(1) component series (marginal variance ``variances``,
    lag-1 coefficient ``phi``) within each run; a run's first volume has the marginal density."""
    out = np.zeros(len(components))
    for run in np.unique(runs):
        rows = np.flatnonzero(runs == run)  # volumes are in acquisition order within a run
        c = components[rows]
        mean = np.vstack([np.zeros(c.shape[1]), c[:-1] * phi])
        var = np.vstack([variances, np.broadcast_to(variances * (1 - phi ** 2), (len(c) - 1, c.shape[1]))])
        out[rows] = 0.5 * (((c - mean) ** 2 / var).sum(1) + np.log(var).sum(1) + c.shape[1] * LOG_2PI)
    return out


def lag1(components: np.ndarray, runs: np.ndarray) -> np.ndarray:
    """Pooled lag-1 autocorrelation of each column within runs (biased estimator)."""
    num = sum((components[runs == r][1:] * components[runs == r][:-1]).sum(0) for r in np.unique(runs))
    return num / (components ** 2).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volumes", type=Path)
    parser.add_argument("--components", type=int, default=50)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = PreparedData.load(args.volumes)
    if sorted(data.test_runs) != [9]:
        raise SystemExit(f"{args.volumes}: not a development-split folder (held-out runs {data.test_runs}, want [9])")
    X = data.X[:, data.mask].astype(np.float64)
    train, held = np.isin(data.runs, data.train_runs), np.isin(data.runs, data.test_runs)
    sets = {"train": train, "held_out": held}
    y, runs = data.label_ids, data.runs
    nll: dict[str, dict[str, float]] = {}

    def record(name, per_volume):
        nll[name] = {k: float(per_volume[rows].mean()) for k, rows in sets.items()}
        print(f"{name}: held-out {nll[name]['held_out']:.1f}, train {nll[name]['train']:.1f} nats/volume", flush=True)

    overall = X - X[train].mean(0)
    record("overall mean", gaussian_nll(overall, LedoitWolf().fit(overall[train]).covariance_))
    residual = X - label_means(y, y[train], X[train])
    covariance = LedoitWolf().fit(residual[train]).covariance_
    record("category means (reference)", gaussian_nll(residual, covariance))
    values, basis = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, basis = values[order], basis[:, order]
    components = residual @ basis
    phi = lag1(components[train], runs[train])
    record("+ temporal AR(1)", ar1_nll(components, runs, values, phi))
    for m in (10, 50):
        record(f"+ temporal AR(1), top {m}", ar1_nll(components, runs, values, np.where(np.arange(len(phi)) < m, phi, 0.0)))
    sample = np.cov(residual[train], rowvar=False, bias=True)
    for a in (0.1, 0.3, 0.5, 0.7):
        record(f"category means, shrinkage {a}", gaussian_nll(residual, shrunk_covariance(sample, a)))
    per_label = np.zeros(len(X))
    for c in np.unique(y[train]):
        rows = y == c
        per_label[rows] = gaussian_nll(residual[rows], LedoitWolf().fit(residual[train & rows]).covariance_)
    record("category covariances", per_label)
    k = args.components
    white = components / np.sqrt(values)
    rest = 0.5 * ((white[:, k:] ** 2).sum(1) + np.log(values[k:]).sum() + (len(values) - k) * LOG_2PI)
    log_scale = 0.5 * np.log(values[:k]).sum()  # the density of the whitened coordinates -> of the components
    for n in (1, 2, 4, 8):
        mixture = GaussianMixture(n, covariance_type="full", reg_covar=1e-3, n_init=3, random_state=0).fit(white[train, :k])
        record(f"mixture {n} (top {k} components)", -mixture.score_samples(white[:, :k]) + log_scale + rest)
    reference = nll["category means (reference)"]
    out = {"held_out_runs": [int(r) for r in data.test_runs], "train_runs": [int(r) for r in data.train_runs],
           "n_voxels": int(data.mask.sum()), "n_train_volumes": int(train.sum()), "n_held_out_volumes": int(held.sum()),
           "nll_nats_per_volume": nll,
           "held_out_gain_against_reference": {m: reference["held_out"] - v["held_out"] for m, v in nll.items()},
           "lag1_top10_components": phi[:10].tolist(), "lag1_mean": float(phi.mean()),
           "ledoit_wolf_shrinkage": float(LedoitWolf().fit(residual[train]).shrinkage_),
           "held_out_whitened": {"excess_kurtosis_mean": float(kurtosis(white[held], axis=0).mean()),
                                 "excess_kurtosis_top10": kurtosis(white[held][:, :10], axis=0).tolist(),
                                 "skewness_mean": float(skew(white[held], axis=0).mean()),
                                 "std_mean": float(white[held].std(0).mean())}}
    print(json.dumps({k: out[k] for k in ("held_out_gain_against_reference", "held_out_whitened", "lag1_mean")}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
