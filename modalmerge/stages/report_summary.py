"""The report's ``summary.json``: the headline numbers beside the claims, and provenance."""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
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
        if fidelity.get("generator_baselines"):
            out["realism_vs_classical_generator"] = realism_against_generators(fidelity)
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
                            "untrained_diffusion_auroc": detectors.get("untrained_diffusion", {}).get("auroc"),
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


# measure -> (how to read it from fidelity.json for the model, for a generator baseline, and the real
# reference; which way is better). "closer" = closer to the real held-out value.
REALISM_MEASURES = {
    "SSIM of category-mean maps": (lambda f: f["ssim"], lambda g: g["ssim"], lambda f: f["ssim_ceiling"], "higher"),
    "category-specificity gap": (lambda f: f["category_specificity_gap"], lambda g: g["category_specificity_gap"],
                                 lambda f: f["category_specificity_gap_ceiling"], "higher"),
    "map correlation": (lambda f: f["map_correlation"], lambda g: g["map_correlation"], lambda f: f["map_correlation_ceiling"], "higher"),
    "RSA": (lambda f: f["rsa"], lambda g: g["rsa"], lambda f: f["rsa_ceiling"], "higher"),
    "connectivity similarity": (lambda f: f["connectivity_similarity"], lambda g: g["connectivity_similarity"],
                                lambda f: f["connectivity_similarity_ceiling"], "higher"),
    **{f"autocorrelation lag {k}": (lambda f, k=k: f["temporal_autocorrelation"]["synthetic"][f"lag{k}"],
                                    lambda g, k=k: g["temporal_autocorrelation"][f"lag{k}"],
                                    lambda f, k=k: f["temporal_autocorrelation"]["heldout_real"][f"lag{k}"], "closer")
       for k in (1, 2, 3)},
    "C2ST accuracy, linear (0.5 ideal)": (lambda f: f["c2st_accuracy"], lambda g: g["c2st_accuracy"], lambda f: 0.5, "lower"),
    "C2ST accuracy, RBF (0.5 ideal)": (lambda f: f["c2st_rbf_accuracy"], lambda g: g["c2st_rbf_accuracy"], lambda f: 0.5, "lower"),
    "MMD²": (lambda f: f["mmd"]["mmd2"], lambda g: g["mmd"]["mmd2"], lambda f: f["mmd_ceiling"]["mmd2"], "lower"),
    "TSTR accuracy": (lambda f: f["tstr_accuracy"], lambda g: g["tstr_accuracy"], lambda f: f["trtr_accuracy"], "higher"),
    "global std": (lambda f: f["global_std"]["synthetic"], lambda g: g["global_std"], lambda f: f["global_std"]["heldout_real"], "closer"),
    "voxel std map correlation": (lambda f: f["voxel_std_map_correlation"], lambda g: g["voxel_std_map_correlation"],
                                  lambda f: f["voxel_std_map_correlation_ceiling"], "higher"),
}


# the set-level measures again with every synthetic run preprocessed like a real run
# (``preprocessed_like_real`` of fidelity.json); the same-size real groups are real runs, already preprocessed
PREPROCESSED_MEASURES = {name: REALISM_MEASURES[name] for name in (
    "connectivity similarity", "autocorrelation lag 1", "autocorrelation lag 2", "autocorrelation lag 3",
    "C2ST accuracy, RBF (0.5 ideal)", "MMD²", "TSTR accuracy")}


def realism_against_generators(fidelity: dict) -> dict:
    """Each realism measure for the model, every classical generator and the real reference, and
    which of model and generator is better: ``{"measures": {...}, "model_better": {name: n}, "of": n}``;
    where fidelity.json has ``preprocessed_like_real``, the same for :data:`PREPROCESSED_MEASURES` on those
    sets under the key ``"preprocessed_like_real"``."""
    out = compare(fidelity, fidelity.get("generator_baselines", {}), REALISM_MEASURES)
    preprocessed = fidelity.get("preprocessed_like_real")
    if preprocessed:
        synthetic = preprocessed["synthetic"]
        as_model = {"temporal_autocorrelation": {"synthetic": synthetic["temporal_autocorrelation"]},
                    **{k: v for k, v in synthetic.items() if k != "temporal_autocorrelation"}}
        measures = {name: (lambda f, read=read: read(as_model), generator_of, real_of, better)
                    for name, (read, generator_of, real_of, better) in PREPROCESSED_MEASURES.items()}
        out["preprocessed_like_real"] = compare(fidelity, preprocessed["generator_baselines"], measures)
    return out


def compare(fidelity: dict, generators: dict, realism_measures: dict) -> dict:
    """``{"measures", "model_better", "of"}`` of :func:`realism_against_generators` for one set of readers."""
    measures, wins = {}, {name: 0 for name in generators}
    for measure, (model_of, generator_of, real_of, better) in realism_measures.items():
        real = real_of(fidelity)
        entry = {"model": model_of(fidelity), "real_or_ceiling": real, "better": better}
        for name, values in generators.items():
            entry[name] = generator_of(values)
            model_wins = {"higher": entry["model"] > entry[name], "lower": entry["model"] < entry[name],
                          "closer": abs(entry["model"] - real) < abs(entry[name] - real)}[better]
            wins[name] += int(model_wins)
        reference = [generator_of(values) for values in fidelity.get("real_runs_reference", {}).get("per_group", [])]
        if reference:  # real runs of the synthetic set's size: a reference, not a competitor
            entry["real_runs_same_size"] = {"mean": float(np.mean(reference)), "min": float(min(reference)),
                                            "max": float(max(reference)), "values": reference}
        measures[measure] = entry
    return {"measures": measures, "model_better": wins, "of": len(realism_measures)}
