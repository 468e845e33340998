"""How much of each residual component the network passes from a noisy volume to its guess of the clean
one, against what the Bayes-optimal Gaussian denoiser passes (a diagnosis; nothing is chosen here).

    python bench/component_gain.py FOLDER [FOLDER ...] [--timesteps 50 200 400 700] [--out FILE.json]

Each FOLDER is a workflow folder of the development split (``results/prep/sub001/volumes.npz`` and
``results/model/sub001/model.pt``, as ``bench/ablation.py --select`` leaves them). Clips of the held-out run
(run 9 there) are noised to each timestep with a fixed seed; the network's x0 guess, minus the training
runs' mean of each volume's label, is projected on the eigenvectors of the training runs' within-category
Ledoit-Wolf covariance, as is the clean volume's residual. Per component, the gain is the least-squares
slope of the guess on the truth. For Gaussian data with that covariance, the optimal guess has slope
abar lambda / (abar lambda + 1 - abar) along a component of variance lambda. A network that spreads its
samples' residual variance evenly (bench/README.md 32) would pass too little of the strong components.
Reported: gain over optimal gain for the 10 strongest components, components 11-50 and the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from modalmerge.analysis.generator_baselines import within_category_covariance  # noqa: E402
from modalmerge.data.clips import make_clips  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402

GROUPS = {"strongest 10": slice(0, 10), "11-50": slice(10, 50), "rest": slice(50, None)}


def gains(folder: Path, timesteps: list[int], seed: int = 0) -> dict:
    data = PreparedData.load(folder / "results/prep/sub001/volumes.npz")
    diffusion, meta = load_diffusion(folder / "results/model/sub001/model.pt", "cpu")
    mask = data.mask
    train = np.isin(data.runs, meta["train_runs"])
    values, vectors = np.linalg.eigh(within_category_covariance(data.X[train][:, mask], data.label_ids[train]))
    order = np.argsort(values)[::-1]
    values, basis = np.maximum(values[order], 1e-12), vectors[:, order]
    means = {c: data.X[train & (data.label_ids == c)][:, mask].mean(0) for c in np.unique(data.label_ids[train])}
    T = meta["config"]["model"]["clip_length"]
    clips, labels, _, _ = make_clips(data.X, data.label_ids, data.runs, meta["test_runs"], T, stride=T)
    x0 = torch.as_tensor(clips)
    label_tensor = torch.as_tensor(labels, dtype=torch.long)
    centre = np.stack([[means[int(c)] for c in row] for row in labels])  # (n, T, voxels)
    truth = (clips[..., mask] - centre).reshape(-1, mask.sum()) @ basis
    generator = torch.Generator().manual_seed(seed)
    out = {"folder": str(folder), "n_volumes": int(truth.shape[0]), "timesteps": {}}
    for t in timesteps:
        noise = torch.randn(x0.shape, generator=generator)
        t_batch = torch.full((x0.shape[0],), t, dtype=torch.long)
        with torch.no_grad():
            x_t = diffusion.scheduler.add_noise(x0, noise, t_batch)
            guess, _ = diffusion.scheduler.predict_x0_and_eps(diffusion.guided_output(x_t, t_batch, label_tensor).float(),
                                                              t_batch, x_t)
        estimate = (guess.numpy()[..., mask] - centre).reshape(-1, mask.sum()) @ basis
        slope = (estimate * truth).sum(0) / (truth ** 2).sum(0)
        abar = float(diffusion.scheduler.abar_on(torch.device("cpu"))[t])
        optimal = abar * values / (abar * values + 1 - abar)
        out["timesteps"][str(t)] = {name: {"gain": float(slope[part].mean()), "optimal_gain": float(optimal[part].mean()),
                                           "ratio": float((slope[part] / optimal[part]).mean())}
                                    for name, part in GROUPS.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[50, 200, 400, 700])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    results = [gains(folder, args.timesteps) for folder in args.folders]
    for result in results:
        print(result["folder"], f"({result['n_volumes']} held-out volumes)")
        for t, groups in result["timesteps"].items():
            print(f"  t={t}: " + "; ".join(f"{name} gain {g['gain']:.3f} (optimal {g['optimal_gain']:.3f}, ratio {g['ratio']:.2f})"
                                            for name, g in groups.items()))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
