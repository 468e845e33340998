"""Stage runner of evaluate_ssim: read the prepared and synthetic data, compute fidelity, write outputs."""

from __future__ import annotations

import json

import numpy as np

from ..analysis.fidelity import evaluate_fidelity
from ..atomic import atomic_file
from ..data.dataset import PreparedData
from .figures import plot_real_vs_synthetic, plot_ssim_distributions


def evaluate_subject(volumes_path, synthetic_path, out: dict, seed: int = 0, n_permutations: int = 200,
                     preprocessing: dict | None = None) -> dict:
    """evaluate_ssim for one subject; ``out`` keys: ``json``, ``tsv``, ``figure_slices``, ``figure_ssim``;
    ``preprocessing``: the ``prep`` block's ``detrend`` and ``standardize`` (what the real runs went through)."""
    data = PreparedData.load(volumes_path, with_raw=True)
    with np.load(synthetic_path) as npz:
        synthetic = {k: npz[k] for k in ("X", "label_ids", "design_run")}
        synthetic["sampler"], synthetic["guidance_scale"] = str(npz["sampler"]), float(npz["guidance_scale"])
        if "residual_max_lag" in npz:  # the lags the sample stage coloured with (older samples: the default's 7)
            synthetic["residual_max_lag"] = int(npz["residual_max_lag"])
    results, table = evaluate_fidelity(data, synthetic, seed, n_permutations, preprocessing)
    with atomic_file(out["json"]) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    with atomic_file(out["tsv"]) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_file(out["figure_slices"]) as tmp:
        plot_real_vs_synthetic(data, synthetic, tmp)
    with atomic_file(out["figure_ssim"]) as tmp:
        plot_ssim_distributions(results, tmp)
    return {k: results[k] for k in ("ssim", "ssim_ceiling", "ssim_fraction_of_ceiling", "category_specificity_gap")}
