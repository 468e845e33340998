"""The report's ``summary.json``: the headline numbers beside the claims, and provenance."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd

CLAIMS = {"ssim": 0.82, "decoding_accuracy": 0.78, "anomaly_auroc": 0.89}
PACKAGES = ("modalmerge", "torch", "snakemake", "nilearn", "nibabel", "numpy", "scikit-learn", "scikit-image",
            "matplotlib", "pandas")


def headline(fidelity, decoding, auc) -> dict:
    out = {"claims": CLAIMS}
    if fidelity:
        out["ssim"] = {"model_zscored_mean_maps": fidelity["ssim"], "ceiling": fidelity["ssim_ceiling"],
                       "fraction_of_ceiling": fidelity["ssim_fraction_of_ceiling"],
                       "grand_mean_baseline": fidelity["ssim_baselines"]["training_grand_mean"],
                       "category_specificity_gap": fidelity["category_specificity_gap"],
                       "category_specificity_gap_ceiling": fidelity["category_specificity_gap_ceiling"],
                       "raw_intensity": fidelity.get("ssim_raw_intensity")}
    if decoding:
        decoders = decoding["decoders"]
        classical = {k: v for k, v in decoders.items() if not k.startswith("diffusion")}
        diffusion = {k: v for k, v in decoders.items() if k.startswith("diffusion")}
        best_c = max(classical, key=lambda k: classical[k]["accuracy"])
        entry = {"best_classical": best_c, "best_classical_accuracy": classical[best_c]["accuracy"],
                 "best_classical_p_value": classical[best_c]["p_value"], "chance": classical[best_c]["chance"]}
        if diffusion:
            best_d = max(diffusion, key=lambda k: diffusion[k]["accuracy"])
            entry.update({"best_diffusion": best_d, "best_diffusion_accuracy": diffusion[best_d]["accuracy"],
                          "best_diffusion_p_value": diffusion[best_d]["p_value"]})
        out["decoding"] = entry
    if auc:
        detectors = auc["detectors"]
        baselines = {k: v for k, v in detectors.items() if k != "diffusion"}
        best_b = max(baselines, key=lambda k: baselines[k]["auroc"])
        out["anomalies"] = {"best_baseline": best_b, "best_baseline_auroc": baselines[best_b]["auroc"],
                            "diffusion_auroc": detectors.get("diffusion", {}).get("auroc"),
                            "default_strengths": auc["default_strengths"]}
    return out


def provenance(config: dict, benchmarks: list[str], seeds: dict) -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    runtimes = {}
    for path in benchmarks:
        if Path(path).exists():
            bench = pd.read_csv(path, sep="\t")
            runtimes[Path(path).parent.name] = {"seconds": float(bench["s"].iloc[0]),
                                                "max_rss_mb": float(bench["max_rss"].iloc[0]) if "max_rss" in bench else None}
    return {"git_commit": commit, "uncommitted_changes": dirty, "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions, "seeds": seeds, "runtimes": runtimes,
            "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "config": config}
