"""Interpretability: the trained model's attention on (noised) clips and the diffusion classifier's
per-voxel evidence, through the model's public methods, tested against univariate selectivity."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr

from .decoding import linear_svm, shuffle_within_runs


@torch.no_grad()
def attention_maps(diffusion, clips: np.ndarray, labels: np.ndarray, t: int = 100, seed: int = 0):
    """Attention of the bottleneck on clips ``(n, T, x, y, z)`` noised to timestep ``t``:
    ``(spatial (n, x, y, z) inside the mask, temporal (n, T, T))`` (see
    :meth:`~modalmerge.model.SpatioTemporalDenoiser.attention_maps`)."""
    device = diffusion.mask.device
    x0 = torch.as_tensor(clips, device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    t_batch = torch.full((len(x0),), t, device=device, dtype=torch.long)
    noise = torch.randn(x0.shape, generator=generator, device=device)
    x_t = diffusion.scheduler.add_noise(x0, noise, t_batch)
    spatial, temporal = diffusion.network.attention_maps(x_t, t_batch, torch.as_tensor(labels, dtype=torch.long, device=device))
    spatial = spatial.cpu().numpy() * diffusion.mask.cpu().numpy()
    return spatial.astype(np.float32), temporal.cpu().numpy().astype(np.float32)


def classifier_evidence_maps(error_maps: np.ndarray, truth: np.ndarray, categories) -> np.ndarray:
    """Where the diffusion classifier finds each category: ``(n_categories, x, y, z)``.

    ``error_maps`` ``(n_blocks, n_categories, x, y, z)``: each block's squared denoising error per voxel
    with every candidate label (:meth:`~.diffusion_decoding.DiffusionClassifier.pair_errors` with
    ``voxel_maps``); ``truth`` the blocks' categories. A block's evidence map is the mean error of the
    other candidates minus the true one's: summed over the mask and divided by its size it is the
    classifier's mean score margin of the true category over the others, so the map splits the
    classifier's decision exactly over voxels. Maps are averaged over the blocks of each category
    (0 where a category has no block).
    """
    categories = list(categories)
    true = error_maps[np.arange(len(truth)), [categories.index(int(label)) for label in truth]]
    evidence = (error_maps.sum(axis=1) - true) / (len(categories) - 1) - true
    return np.stack([evidence[truth == c].mean(0) if np.any(truth == c) else np.zeros(error_maps.shape[2:])
                     for c in categories]).astype(np.float32)


def selectivity_maps(X: np.ndarray, y: np.ndarray, categories) -> tuple[np.ndarray, np.ndarray]:
    """Univariate category selectivity of every voxel of ``X`` (n, n_voxels): the one-way ANOVA F
    across ``categories`` ``(n_voxels,)`` (``sklearn.feature_selection.f_classif``), and per category
    the Welch t statistic of it against the others ``(n_categories, n_voxels)``; rows whose label is
    not one of ``categories`` are left out."""
    f_values, t_values = selectivity_statistics(X, np.asarray(y)[None], categories)
    return f_values[0], t_values[0]


def selectivity_statistics(X: np.ndarray, label_sets: np.ndarray, categories) -> tuple[np.ndarray, np.ndarray]:
    """:func:`selectivity_maps` for many label vectors ``(n_sets, n)`` at once, from per-category sums
    (one matrix product with ``X`` for all sets): ``F (n_sets, n_voxels)``, ``t (n_sets, n_categories,
    n_voxels)``. Measured: a 1000-permutation test on the embedded slice in 0.7 s instead of 5.3 s."""
    X = np.asarray(X, dtype=np.float64)
    onehot = (np.asarray(label_sets)[:, :, None] == np.asarray(categories)[None, None, :]).astype(np.float64)
    counts = onehot.sum(axis=1)  # (S, K)
    members = onehot.transpose(0, 2, 1)  # (S, K, n)
    sums, squares = members @ X, members @ X ** 2
    n = counts.sum(axis=1)[:, None]  # (S, 1)
    total, total_squares = sums.sum(axis=1), squares.sum(axis=1)  # (S, V)
    means = sums / counts[:, :, None]
    explained = np.sum(counts[:, :, None] * means ** 2, axis=1)  # sum over groups of n_k * mean_k^2
    between = explained - total ** 2 / n
    within = total_squares - explained
    n_groups = len(categories)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_values = (between / (n_groups - 1)) / (within / (n - n_groups))
    inside_var = (squares - counts[:, :, None] * means ** 2) / (counts[:, :, None] - 1)
    out_counts = n[:, :, None] - counts[:, :, None]
    out_sums = total[:, None] - sums
    out_means = out_sums / out_counts
    outside_var = (total_squares[:, None] - squares - out_counts * out_means ** 2) / (out_counts - 1)
    pooled = np.sqrt(np.maximum(inside_var, 0) / counts[:, :, None] + np.maximum(outside_var, 0) / out_counts)
    t_values = (means - out_means) / np.maximum(pooled, 1e-12)
    return f_values, t_values


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, centred and scaled so that a dot product / n is Spearman's rho."""
    ranks = np.argsort(np.argsort(values, axis=-1), axis=-1).astype(np.float64)
    ranks -= ranks.mean(axis=-1, keepdims=True)
    return ranks / np.linalg.norm(ranks, axis=-1, keepdims=True)


SELECTIVITY_NOTE = ("selectivity = ANOVA F (any category) and per-category t maps of the training runs; null = labels "
                    "shuffled within runs; svm_weights = the same maps against the linear SVM's one-vs-rest weights "
                    "(training runs; the weight norm over categories, and each category's weights), null = the SVM "
                    "refitted on labels shuffled within runs")


def attention_selectivity(attention: np.ndarray, X: np.ndarray, y: np.ndarray, runs: np.ndarray, categories,
                          n_permutations: int = 1000, seed: int = 0, n_svm_permutations: int = 200) -> dict:
    """Does the model attend to category-selective voxels? ``attention`` ``(n_categories, n_voxels)``
    (one map per category, brain voxels), ``X``/``y``/``runs`` the training-run volumes.

    Two Spearman correlations, each against a null of selectivity maps recomputed with labels
    shuffled within runs: ``any_category`` (mean over categories of attention vs the ANOVA F map)
    and ``category_specific`` (each category's attention minus the mean attention, vs that
    category's t map against the others). Under ``svm_weights`` the same two against the linear
    SVM's weights (:func:`svm_weight_agreement`, ``n_svm_permutations`` shuffles; 0 leaves it out).
    """
    attention_ranks = _ranks(attention)
    specific_ranks = _ranks(attention - attention.mean(0))
    rng = np.random.default_rng(seed)
    label_sets = np.stack([y] + [shuffle_within_runs(y, runs, rng) for _ in range(n_permutations)])
    statistics = []
    for start in range(0, len(label_sets), 250):  # bounded memory: 250 sets x categories x voxels
        f_values, t_values = selectivity_statistics(X, label_sets[start:start + 250], categories)
        statistics.append(np.stack([np.mean(_ranks(f_values) @ attention_ranks.T, axis=1),
                                    np.mean(np.sum(specific_ranks * _ranks(t_values), axis=2), axis=1)], axis=1))
    statistics = np.concatenate(statistics)
    out = _against_null(statistics[0], statistics[1:], n_permutations)
    if n_svm_permutations:
        out["svm_weights"] = svm_weight_agreement(attention, X, y, runs, categories, n_svm_permutations, seed)
    out["note"] = ("attention = the bottleneck's spatial attention on generated clips of each category, upsampled; "
                   + SELECTIVITY_NOTE)
    return out


def svm_weight_agreement(maps: np.ndarray, X: np.ndarray, y: np.ndarray, runs: np.ndarray, categories,
                         n_permutations: int = 200, seed: int = 0) -> dict:
    """Do ``maps`` ``(n_categories, n_voxels)`` point where the project's linear SVM, trained on the
    training-run volumes ``X``/``y``, puts its weight? ``any_category``: Spearman of the mean map with
    each voxel's weight norm over the one-vs-rest problems; ``category_specific``: mean over categories
    of each map minus the mean map vs that category's weight vector. Null: the SVM refitted on labels
    shuffled within runs (all refits solved together, :meth:`~.svm.LinearSVM.permuted_coefficients`)."""
    categories = list(categories)
    keep = np.isin(y, categories)
    X, y, runs = np.asarray(X)[keep], np.asarray(y)[keep], np.asarray(runs)[keep]
    rng = np.random.default_rng(seed)
    label_sets = np.stack([y] + [shuffle_within_runs(y, runs, rng) for _ in range(n_permutations)])
    weights, classes = linear_svm().permuted_coefficients(X, label_sets)  # (sets, categories, voxels)
    if list(classes) != categories:
        raise ValueError(f"the training volumes hold categories {list(classes)}, the maps {categories}")
    norm_ranks = _ranks(np.linalg.norm(weights, axis=1))
    statistics = np.stack([norm_ranks @ _ranks(maps.mean(0)),
                           np.mean(np.sum(_ranks(maps - maps.mean(0)) * _ranks(weights), axis=2), axis=1)], axis=1)
    return _against_null(statistics[0], statistics[1:], n_permutations)


def _against_null(observed: np.ndarray, null: np.ndarray, n_permutations: int) -> dict:
    out = {}
    for i, name in enumerate(("any_category", "category_specific")):
        q99 = float(np.quantile(null[:, i], 0.99))
        out[name] = {"spearman": float(observed[i]), "null_99th_percentile": q99,
                     "p_value": float((1 + np.sum(null[:, i] >= observed[i])) / (1 + n_permutations)),
                     "above_null_99th": bool(observed[i] > q99)}
    out["n_permutations"] = n_permutations
    return out


def attention_by_lag(temporal: np.ndarray) -> np.ndarray:
    """Mean attention weight a frame gives to the frame ``lag`` later, for lag = -(T-1)..T-1:
    ``temporal`` ``(n, T, T)`` (rows: query frame) -> ``(2T-1,)``."""
    length = temporal.shape[-1]
    mean = temporal.mean(axis=0)
    return np.array([np.diagonal(mean, offset=lag).mean() for lag in range(-(length - 1), length)])


def lag_autocorrelation(X: np.ndarray, runs: np.ndarray, max_lag: int) -> np.ndarray:
    """Mean voxelwise autocorrelation of ``X`` ``(n, n_voxels)`` at lags 1..max_lag, within runs."""
    out = []
    for lag in range(1, max_lag + 1):
        pairs = [(X[runs == r][lag:], X[runs == r][:-lag]) for r in np.unique(runs) if (runs == r).sum() > lag]
        a = np.concatenate([p[0] for p in pairs])
        b = np.concatenate([p[1] for p in pairs])
        a, b = a - a.mean(0), b - b.mean(0)
        out.append(float(np.mean((a * b).sum(0) / np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0) + 1e-12))))
    return np.array(out)


def temporal_attention_lags(diffusion, clips: np.ndarray, labels: np.ndarray, X: np.ndarray, runs: np.ndarray,
                            hemodynamic_shift: int, seed: int = 0) -> dict:
    """Does the temporal attention follow the data's temporal structure? On real training-run clips
    ``(n, T, ...)`` (noised to t = 100, as for the maps): the attention weight by lag; the same on
    the same clips with their frames shuffled in time (labels shuffled with them: what the attention
    does by position alone); the data's autocorrelation at lags 1..T-1 (``X``, ``runs``: training
    runs); and the strongest lag against the hemodynamic shift the preparation applied."""
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(clips.shape[1]) for _ in range(len(clips))])
    shuffled = np.take_along_axis(clips, order.reshape(order.shape + (1,) * (clips.ndim - 2)), axis=1)
    shuffled_labels = np.take_along_axis(labels, order, axis=1)
    _, temporal = attention_maps(diffusion, clips, labels, seed=seed)
    _, temporal_shuffled = attention_maps(diffusion, shuffled, shuffled_labels, seed=seed)
    length = clips.shape[1]
    lags = np.arange(-(length - 1), length)
    profile, profile_shuffled = attention_by_lag(temporal), attention_by_lag(temporal_shuffled)
    autocorrelation = lag_autocorrelation(X, runs, length - 1)
    off = lags != 0
    positive = lags > 0
    # per-lag attention to the future and past, averaged (the data's autocorrelation is symmetric)
    symmetric = (profile[positive] + profile[::-1][positive]) / 2
    rho = spearmanr(symmetric, autocorrelation).statistic if length > 2 else float("nan")
    return {
        "lags": lags.tolist(), "attention_by_lag": profile.tolist(), "attention_by_lag_frames_shuffled": profile_shuffled.tolist(),
        "uniform": 1 / length,
        "self_attention": float(profile[lags == 0][0]),
        "strongest_other_lag": int(lags[off][np.argmax(profile[off])]),
        "hemodynamic_shift_volumes": int(hemodynamic_shift),
        "data_autocorrelation_lags_1_up": autocorrelation.tolist(),
        "spearman_attention_vs_autocorrelation": float(rho),
        "shuffling_changes_profile_by": float(np.abs(profile - profile_shuffled).sum() / 2),
        "note": ("temporal attention of the last temporal layer, averaged over bottleneck locations and clips, by lag "
                 "(key frame - query frame) on clean training-run clips noised to t = 100; frames shuffled = the same "
                 "clips with frames (and labels) permuted in time, so any structure left is positional; "
                 "shuffling_changes_profile_by = total variation distance between the two profiles (0 = attention "
                 "ignores the content's order); Spearman over lags 1..T-1 of the attention (future and past averaged) "
                 "with the training runs' mean voxel autocorrelation"),
    }
