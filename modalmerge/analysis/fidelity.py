"""evaluate-SSIM, the science: fidelity of the synthetic fMRI on held-out runs, every number beside its
real-vs-real ceiling and trivial baselines.

The headline is SSIM of per-category mean maps on z-scored data, as a fraction of the ceiling
(training-run vs held-out category means), beside the training grand mean; plus the
category-specificity gap, which a generator that ignores the category cannot win.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.dataset import PreparedData
from . import fidelity_metrics as F
from .decoding import linear_svm_accuracy
from .fidelity_reference import (GENERATOR_NOTE, generator_baselines, generator_sets, heldout_reference,
                                 preprocessed_reference, real_runs_reference)
from .generator_baselines import set_metrics

RAW_SSIM_NOTE = ("Raw-intensity SSIM compares images dominated by the static EPI anatomy: every protocol, "
                 "noise included, scores near 1, so it says nothing about brain activity. Shown only to "
                 "compare with the 0.82 claim.")


def contiguous_segments(design_run: np.ndarray) -> np.ndarray:
    """One id per synthetic run: synthetic runs are stored one after another, so a new run starts
    wherever the design run changes (also when the same design is generated twice in a row)."""
    return np.cumsum(np.r_[True, design_run[1:] != design_run[:-1]])


def evaluate_fidelity(data: PreparedData, synthetic: dict, seed: int = 0, n_permutations: int = 200,
                      preprocessing: dict | None = None) -> tuple[dict, pd.DataFrame]:
    """All fidelity numbers; ``synthetic`` holds ``X`` (n, x, y, z), ``label_ids``, ``design_run``.
    ``preprocessing`` (the ``prep`` block's ``detrend`` and ``standardize``; default the schema's, true and
    zscore_sample) is what ``preprocessed_like_real`` puts every synthetic run through.

    Returns ``(results, per_category_table)``.
    """
    rng = np.random.default_rng(seed)
    mask = data.mask
    class_names = list(data.class_names)
    categories = data.categories
    train, test = ~data.is_test, data.is_test
    X_train, y_train = data.X[train], data.label_ids[train]
    X_test, y_test = data.X[test], data.label_ids[test]
    X_syn, y_syn = synthetic["X"], synthetic["label_ids"]
    if len(X_syn) == 0:
        raise ValueError("The synthetic set is empty: set sample.runs_per_heldout_design >= 1.")

    real = heldout_reference(data, seed, n_permutations)  # what every set is scored against, built once
    data_range, window, decoder = real["data_range"], real["window"], real["decoder"]
    real_means = F.category_means(X_test, y_test, categories)
    train_means = F.category_means(X_train, y_train, categories)
    syn_means = F.category_means(X_syn, y_syn, categories)
    grand_mean = X_train.mean(axis=0)
    n_per_category = [int((y_syn == c).sum()) for c in categories]

    # trivial generators, each with as many volumes per category as the synthetic set
    noise_means = np.stack([F.gaussian_like(X_train[y_train == c], mask, n, rng).mean(0)
                            for c, n in zip(categories, n_per_category)])
    shuffled_means = np.stack([F.voxel_shuffled(X_train[y_train == c][rng.choice((y_train == c).sum(), n)], mask, rng).mean(0)
                               for c, n in zip(categories, n_per_category)])
    wrong_category = np.roll(train_means, 1, axis=0)

    def mean_ssim(means):
        return F.mean_map_ssim(means, real_means, mask, data_range, window)

    ssim_syn = mean_ssim(syn_means)
    ssim_ceiling = mean_ssim(train_means)
    baselines = {
        "training_grand_mean": float(mean_ssim(np.repeat(grand_mean[None], len(categories), 0)).mean()),
        "wrong_category_training_mean": float(mean_ssim(wrong_category).mean()),
        "zero_map": float(mean_ssim(np.zeros_like(real_means)).mean()),
        "gaussian_noise_voxelwise": float(mean_ssim(noise_means).mean()),
        "voxel_shuffled_real": float(mean_ssim(shuffled_means).mean()),
    }

    # per sample: each synthetic category volume against its nearest held-out real volume of that category
    def per_sample(volumes, labels):
        scores = [F.nearest_real_ssim(volumes[labels == c], X_test[y_test == c], mask, data_range, window)
                  for c in categories if (labels == c).any()]
        return np.concatenate(scores)

    take = min(40, min(n_per_category))
    pick = lambda X, y: np.concatenate([np.flatnonzero(y == c)[rng.permutation((y == c).sum())[:take]] for c in categories])
    syn_pick, train_pick = pick(X_syn, y_syn), pick(X_train, y_train)
    sample_syn = per_sample(X_syn[syn_pick], y_syn[syn_pick])
    sample_ceiling = per_sample(X_train[train_pick], y_train[train_pick])
    noise_volumes = np.concatenate([F.gaussian_like(X_train[y_train == c], mask, take, rng) for c in categories])
    noise_labels = np.repeat(categories, take)
    sample_baselines = {
        "gaussian_noise_voxelwise": float(per_sample(noise_volumes, noise_labels).mean()),
        "voxel_shuffled_real": float(per_sample(F.voxel_shuffled(X_train[train_pick], mask, rng), y_train[train_pick]).mean()),
        "training_category_mean": float(per_sample(train_means, np.array(categories)).mean()),
    }

    results = {
        "protocol": {
            "space": "per-run detrended z-scores (prep stage), brain voxels of the mask's bounding box",
            "ssim": f"skimage structural_similarity, Gaussian window sigma {window['sigma']} ({window['win_size']} voxels), "
                    f"{window['dimensions']}D, SSIM map averaged over brain voxels",
            "data_range": data_range, "data_range_source": "max - min of the real training volumes",
            "train_runs": data.train_runs, "test_runs": data.test_runs, "seed": seed,
            "n_synthetic_volumes": int(len(X_syn)), "n_heldout_volumes": int(len(X_test)),
            "sampler": str(synthetic.get("sampler", "")), "guidance_scale": float(synthetic.get("guidance_scale", np.nan)),
        },
        "ssim": float(ssim_syn.mean()),
        "ssim_ceiling": float(ssim_ceiling.mean()),
        "ssim_baselines": baselines,
        "ssim_fraction_of_ceiling": float(ssim_syn.mean() / ssim_ceiling.mean()),
        "category_specificity_gap": F.specificity_gap(syn_means, real_means, mask, data_range, window),
        "category_specificity_gap_ceiling": F.specificity_gap(train_means, real_means, mask, data_range, window),
        "category_specificity_gap_baselines": {
            "training_grand_mean": 0.0,
            "gaussian_noise_voxelwise": F.specificity_gap(noise_means, real_means, mask, data_range, window),
        },
        "ssim_per_sample": float(sample_syn.mean()),
        "ssim_per_sample_ceiling": float(sample_ceiling.mean()),
        "ssim_per_sample_baselines": sample_baselines,
        "ssim_per_sample_distribution": {"synthetic": sample_syn.tolist(), "ceiling": sample_ceiling.tolist()},
    }

    if data.X_raw is not None:  # loaded with with_raw=True
        results.update(raw_intensity_ssim(data, data.X_raw, syn_means, categories, window, rng, n_per_category))

    # beyond SSIM: the numbers every generator is compared on (set_metrics), then their ceilings
    A_syn, A_test, A_train = X_syn[:, mask], X_test[:, mask], X_train[:, mask]
    cat_train, cat_test = np.isin(y_train, categories), np.isin(y_test, categories)
    segments = contiguous_segments(synthetic["design_run"])
    own = set_metrics(X_syn, y_syn, segments, **real)
    corr_ceiling = F.map_correlation(train_means, real_means, mask)
    results["map_correlation"] = own["map_correlation"]
    results["map_correlation_ceiling"] = float(corr_ceiling.mean())
    results["map_correlation_baselines"] = {"gaussian_noise_voxelwise": float(F.map_correlation(noise_means, real_means, mask).mean()),
                                            "wrong_category_training_mean": float(F.map_correlation(wrong_category, real_means, mask).mean())}
    results["rsa"] = own["rsa"]
    results["rsa_ceiling"] = F.rsa(train_means, real_means, mask)
    results["rsa_baselines"] = {"gaussian_noise_voxelwise": F.rsa(noise_means, real_means, mask)}
    results["voxel_mean_map_correlation"] = float(np.corrcoef(A_syn.mean(0), A_test.mean(0))[0, 1])
    results["voxel_std_map_correlation"] = own["voxel_std_map_correlation"]
    results["voxel_std_map_correlation_ceiling"] = float(np.corrcoef(A_train.std(0), A_test.std(0))[0, 1])
    results["global_std"] = {"synthetic": own["global_std"], "heldout_real": float(A_test.std())}
    results["connectivity_similarity"] = own["connectivity_similarity"]
    results["residual_spectrum"] = {"synthetic": own["residual_spectrum"],
                                    "heldout_real": F.residual_spectrum(A_test, y_test, real["basis"]), "note": SPECTRUM_NOTE}
    results["connectivity_similarity_ceiling"] = F.connectivity_similarity(X_train, X_test, mask)
    results["temporal_autocorrelation"] = {"synthetic": own["temporal_autocorrelation"],
                                           "heldout_real": F.temporal_autocorrelation(X_test, data.runs[test], mask)}
    n_mmd = min(len(A_train), len(A_test), 300)
    subsample = np.random.default_rng(seed)
    results["mmd"] = own["mmd"]
    results["mmd_ceiling"] = F.mmd_rbf(A_train[subsample.choice(len(A_train), n_mmd, replace=False)],
                                       A_test[subsample.choice(len(A_test), n_mmd, replace=False)], n_permutations, seed)
    results["c2st_accuracy"] = own["c2st_accuracy"]
    results["c2st_accuracy_ceiling"] = F.c2st(A_train, A_test, seed)
    results["c2st_note"] = ("accuracy of telling the two sets apart (0.5 = indistinguishable); the ceiling compares training with "
                            "held-out real runs. Linear (logistic regression): sees mean differences only, blind to noise "
                            "with the right mean; c2st_rbf_accuracy (RBF SVM) also sees the spatial covariance")
    results["c2st_rbf_accuracy"] = own["c2st_rbf_accuracy"]
    results["c2st_rbf_accuracy_ceiling"] = F.c2st(A_train, A_test, seed, kernel="rbf")

    # usefulness: category fidelity, TSTR vs TRTR, diversity, memorisation
    results["category_fidelity"] = own["category_fidelity"]
    results["category_fidelity_real_heldout"] = float((decoder.predict(A_test[cat_test]) == y_test[cat_test]).mean())
    results["category_fidelity_chance"] = float(1 / len(categories))
    results["category_fidelity_note"] = ("a classifier trained on real training runs, scored on synthetic volumes by their "
                                         "conditioning label; guidance inflates it, so read it beside the real held-out figure, "
                                         "never as realism")
    results["tstr_accuracy"] = own["tstr_accuracy"]
    results["trtr_accuracy"] = results["category_fidelity_real_heldout"]
    results["trtr_shuffled_labels_accuracy"] = linear_svm_accuracy(A_train[cat_train], rng.permutation(y_train[cat_train]),
                                                                   A_test[cat_test], y_test[cat_test])
    results["diversity_mean_pairwise_ssim"] = {
        "synthetic": float(np.mean([F.mean_pairwise_ssim(X_syn[y_syn == c], mask, data_range, window, 25, seed) for c in categories])),
        "heldout_real": float(np.mean([F.mean_pairwise_ssim(X_test[y_test == c], mask, data_range, window, 25, seed) for c in categories])),
    }
    results["memorisation"] = {
        "median_nearest_training_distance_synthetic": own["median_nearest_training_distance_synthetic"],
        "median_nearest_training_distance_heldout_real": own["median_nearest_training_distance_heldout_real"],
        "ratio": own["memorisation_ratio"],
        "note": "ratio well below 1 would mean synthetic volumes sit closer to training volumes than new real data does (copying)",
    }
    classical = generator_sets(data, seed, int(synthetic.get("residual_max_lag", 7)))
    results["generator_baselines"] = generator_baselines(data, real, sets=classical)
    results["generator_baselines_note"] = GENERATOR_NOTE
    results["real_runs_reference"] = real_runs_reference(data, real, n_runs=len(np.unique(segments)))
    results["preprocessed_like_real"] = preprocessed_reference(
        X_syn, y_syn, segments, classical, real, preprocessing or {"detrend": True, "standardize": "zscore_sample"})

    table = pd.DataFrame({
        "category": [class_names[c] for c in categories],
        "n_synthetic": n_per_category,
        "ssim": ssim_syn, "ssim_ceiling": ssim_ceiling,
        "ssim_grand_mean": mean_ssim(np.repeat(grand_mean[None], len(categories), 0)),
        "ssim_gaussian_noise": mean_ssim(noise_means),
        "map_correlation": F.map_correlation(syn_means, real_means, mask), "map_correlation_ceiling": corr_ceiling,
    })
    return results, table


SPECTRUM_NOTE = ("variance of the residual (volumes minus the set's own label means) along the training runs' "
                 "within-category Ledoit-Wolf eigenvectors, strongest first: total and the share in the leading 10 and 50")


def raw_intensity_ssim(data: PreparedData, X_raw, syn_means, categories, window, rng, n_per_category) -> dict:
    """The same mean-map SSIM on raw intensities (synthetic z-scores mapped back with training voxel stats)."""
    mask = data.mask
    train, test = ~data.is_test, data.is_test
    raw_train, raw_test = X_raw[train], X_raw[test]
    mean, std = raw_train.mean(0), raw_train.std(0)
    data_range = float(raw_train[:, mask].max() - raw_train[:, mask].min())
    real = F.category_means(raw_test, data.label_ids[test], categories)
    ceiling = F.category_means(raw_train, data.label_ids[train], categories)
    synthetic = syn_means * std + mean
    noise = np.stack([F.gaussian_like(raw_train, mask, n, rng)[:1].mean(0) for n in n_per_category])
    score = lambda means: float(F.mean_map_ssim(means, real, mask, data_range, window).mean())
    return {"ssim_raw_intensity": score(synthetic), "ssim_raw_intensity_ceiling": score(ceiling),
            "ssim_raw_intensity_baselines": {"single_gaussian_noise_volume": score(noise)},
            "ssim_raw_intensity_note": RAW_SSIM_NOTE}
