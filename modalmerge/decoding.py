"""decode: 8-category decoding, cross-validated by run, classical baselines beside diffusion-based decoders.

Every decoder is scored on the same held-out runs (the split of mask-and-normalize); the
classical ones also under leave-one-run-out over all runs, for comparison with the literature.
Each gets accuracy, balanced accuracy, per-category recall, a confusion matrix and a
permutation p-value (labels shuffled within runs).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score
from sklearn.model_selection import LeaveOneGroupOut
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger("modalmerge")


# --------------------------------------------------------------------------- classical decoders
def classical_decoders() -> dict:
    """The reference decoders a reviewer knows (scikit-learn pipelines)."""
    return {
        "linear_svm": LinearSVC(C=0.01, max_iter=5000),
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
    }


class NilearnDecoder(BaseEstimator, ClassifierMixin):
    """nilearn's :class:`~nilearn.decoding.Decoder` (SVC, default ANOVA screening) on masked volumes.

    Takes ``(n, n_voxels)`` rows like the other decoders and rebuilds images with ``mask_img``.
    """

    def __init__(self, mask_img=None, screening_percentile=20, seed=0):
        self.mask_img = mask_img
        self.screening_percentile = screening_percentile
        self.seed = seed

    def _images(self, rows):
        from nilearn.maskers import NiftiMasker
        masker = NiftiMasker(self.mask_img).fit()
        return masker.inverse_transform(rows)

    def fit(self, X, y):
        from nilearn.decoding import Decoder
        from sklearn.model_selection import StratifiedKFold
        self.decoder_ = Decoder(estimator="svc", mask=self.mask_img, screening_percentile=self.screening_percentile,
                                cv=StratifiedKFold(3, shuffle=True, random_state=self.seed), standardize=False, verbose=0)
        self.decoder_.fit(self._images(X), y)
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        check_is_fitted(self, "decoder_")
        return np.asarray(self.decoder_.predict(self._images(X)))


def block_average(X: np.ndarray, labels: np.ndarray, runs: np.ndarray):
    """Average the volumes of each stimulus block (consecutive identical labels in a run)."""
    rows, block_labels, block_runs = [], [], []
    for run in np.unique(runs):
        index = np.flatnonzero(runs == run)
        start = 0
        for i in range(1, len(index) + 1):
            if i == len(index) or labels[index[i]] != labels[index[start]]:
                rows.append(X[index[start:i]].mean(0))
                block_labels.append(labels[index[start]])
                block_runs.append(run)
                start = i
    return np.stack(rows), np.array(block_labels), np.array(block_runs)


def shuffle_within_runs(labels: np.ndarray, runs: np.ndarray, rng) -> np.ndarray:
    shuffled = labels.copy()
    for run in np.unique(runs):
        index = np.flatnonzero(runs == run)
        shuffled[index] = labels[rng.permutation(index)]
    return shuffled


def score(y_true, y_pred, categories, groups) -> dict:
    """Accuracy, balanced accuracy, per-category recall, confusion matrix, per-group (run) accuracy."""
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "recall_per_category": recall_score(y_true, y_pred, labels=categories, average=None, zero_division=0).tolist(),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=categories).tolist(),
        "fold_scores": [float(np.mean(y_true[groups == g] == y_pred[groups == g])) for g in np.unique(groups)],
        "fold_runs": [int(g) for g in np.unique(groups)],
    }


def chance_level(y_test: np.ndarray, groups: np.ndarray) -> dict:
    """Chance from the real class counts: the majority-class rate per held-out run, and 1 / n_classes."""
    per_run = {int(g): float(np.bincount(y_test[groups == g]).max() / (groups == g).sum()) for g in np.unique(groups)}
    return {"chance": float(1 / len(np.unique(y_test))), "majority_rate_per_run": per_run}


def heldout_split_decoding(estimator, X, y, runs, train_runs, test_runs, categories, n_permutations, seed) -> dict:
    """Fit on the training runs, score on the held-out runs; permutation test by refitting with labels
    shuffled within the training runs. Returns the score dict with ``p_value`` and ``null``."""
    train, test = np.isin(runs, train_runs), np.isin(runs, test_runs)
    if set(runs[train]) & set(runs[test]):
        raise RuntimeError("a held-out run is in the training set")  # never expected: guards the split
    model = clone(estimator).fit(X[train], y[train])
    result = score(y[test], model.predict(X[test]), categories, runs[test])
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(n_permutations):
        permuted = shuffle_within_runs(y[train], runs[train], rng)
        null.append(float(np.mean(clone(estimator).fit(X[train], permuted).predict(X[test]) == y[test])))
    result.update(chance_level(y[test], runs[test]))
    result["p_value"] = float((1 + np.sum(np.array(null) >= result["accuracy"])) / (1 + n_permutations))
    result["null_accuracies"] = null
    result["n_permutations"] = n_permutations
    result["train_runs"], result["test_runs"] = [int(r) for r in train_runs], [int(r) for r in test_runs]
    return result


def leave_one_run_out(estimator, X, y, runs, categories) -> dict:
    """Leave-one-run-out over all runs (the literature's protocol)."""
    predictions = np.empty_like(y)
    for train, test in LeaveOneGroupOut().split(X, y, runs):
        predictions[test] = clone(estimator).fit(X[train], y[train]).predict(X[test])
    result = score(y, predictions, categories, runs)
    result["accuracy_std_over_runs"] = float(np.std(result["fold_scores"]))
    return result


# --------------------------------------------------------------------------- diffusion-based decoders
def stimulus_blocks(label_ids: np.ndarray, runs: np.ndarray, rest_id: int):
    """(run, first index, last index + 1, label) of every stimulus block."""
    blocks = []
    for run in np.unique(runs):
        index = np.flatnonzero(runs == run)
        start = 0
        for i in range(1, len(index) + 1):
            if i == len(index) or label_ids[index[i]] != label_ids[index[start]]:
                if label_ids[index[start]] != rest_id:
                    blocks.append((int(run), int(index[start]), int(index[i - 1]) + 1, int(label_ids[index[start]])))
                start = i
    return blocks


class DiffusionClassifier(BaseEstimator, ClassifierMixin):
    """Classify a stimulus block by which category's conditional model denoises it best.

    For each block, a clip of T volumes centred on it is noised with ``n_pairs`` fixed
    (timestep, noise) pairs shared by all candidates; the clip's block frames are labelled
    with each candidate category in turn (other frames keep their known design label, e.g.
    rest), and the category with the lowest denoising error on the block frames wins. The
    onsets are known, only the category is predicted. ``fit`` only records the classes: the
    trained diffusion model is the classifier.
    """

    def __init__(self, diffusion=None, categories=None, n_pairs: int = 8, t_range=(100, 600), batch_size: int = 64, seed: int = 0):
        self.diffusion = diffusion
        self.categories = categories
        self.n_pairs = n_pairs
        self.t_range = t_range
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, X=None, y=None):
        self.classes_ = np.asarray(self.categories)
        return self

    @torch.no_grad()
    def block_errors(self, clips: np.ndarray, design: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Denoising errors ``(n_blocks, n_categories)`` of clips ``(n, T, x, y, z)`` with design labels
        ``(n, T)`` and boolean ``target`` frames ``(n, T)`` (the block's frames)."""
        check_is_fitted(self, "classes_")
        diffusion = self.diffusion
        device = diffusion.mask.device
        generator = torch.Generator().manual_seed(self.seed)
        t = torch.randint(self.t_range[0], self.t_range[1], (self.n_pairs,), generator=generator)
        noise = torch.randn((self.n_pairs, *clips.shape[1:]), generator=generator)
        mask = diffusion.mask
        errors = np.zeros((len(clips), len(self.classes_)))
        jobs = [(b, c, p) for b in range(len(clips)) for c in range(len(self.classes_)) for p in range(self.n_pairs)]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            b_idx = torch.tensor([j[0] for j in chunk])
            c_idx = [j[1] for j in chunk]
            p_idx = torch.tensor([j[2] for j in chunk])
            x0 = torch.as_tensor(clips)[b_idx].to(device)
            labels = torch.as_tensor(design)[b_idx].clone()
            frames = torch.as_tensor(target)[b_idx]
            for row, c in enumerate(c_idx):
                labels[row, frames[row]] = int(self.classes_[c])
            eps = noise[p_idx].to(device)
            tt = t[p_idx].to(device)
            x_t = diffusion.scheduler.add_noise(x0, eps, tt)
            prediction = diffusion.network(x_t, tt, labels.to(device))
            target_values = diffusion.scheduler.target(x0, eps, tt)
            per_frame = (((prediction - target_values) ** 2) * mask).flatten(2).sum(2) / mask.sum()
            per_clip = (per_frame.cpu() * frames).sum(1) / frames.sum(1)
            for row, (b, c, _) in enumerate(chunk):
                errors[b, c] += float(per_clip[row]) / self.n_pairs
        return errors

    def predict_blocks(self, clips, design, target) -> np.ndarray:
        return self.classes_[self.block_errors(clips, design, target).argmin(axis=1)]


def block_clips(X: np.ndarray, label_ids: np.ndarray, runs: np.ndarray, blocks, clip_length: int, rest_id: int):
    """For each block: a clip of ``clip_length`` volumes centred on it (inside its run), the design
    labels with the block's frames marked unknown, and the boolean block-frame mask."""
    clips, design, target = [], [], []
    for run, start, stop, _ in blocks:
        index = np.flatnonzero(runs == run)
        first, last = index[0], index[-1] + 1
        centre = (start + stop) // 2
        lo = int(np.clip(centre - clip_length // 2, first, last - clip_length))
        window = np.arange(lo, lo + clip_length)
        clips.append(X[window])
        in_block = (window >= start) & (window < stop)
        labels = label_ids[window].copy()
        labels[in_block] = rest_id  # placeholder, replaced by each candidate
        design.append(labels)
        target.append(in_block)
    return np.stack(clips).astype(np.float32), np.stack(design), np.stack(target)


@torch.no_grad()
def encoder_features(diffusion, X: np.ndarray, runs: np.ndarray, clip_length: int, t: int = 50,
                     batch_size: int = 16, seed: int = 0) -> np.ndarray:
    """Bottleneck features of the trained denoiser for every volume: ``(n, features)``.

    Volumes are fed as consecutive clips of their run, lightly noised (timestep ``t``), with the
    null label (the decoder must not see the category); features are the bottleneck activations
    after the temporal and cross-modal attention.
    """
    from .sampling import design_clips
    network = diffusion.network
    device = diffusion.mask.device
    captured = {}
    hook = network.cross_modal.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o))
    generator = torch.Generator().manual_seed(seed)
    features = [None] * len(X)
    try:
        for run in np.unique(runs):
            index = np.flatnonzero(runs == run)
            clip_index, keep = design_clips(index, clip_length)
            for s in range(0, len(clip_index), batch_size):
                batch_index = clip_index[s:s + batch_size]
                x0 = torch.as_tensor(X[batch_index], device=device)
                noise = torch.randn(x0.shape, generator=generator).to(device)
                tt = torch.full((len(x0),), t, device=device, dtype=torch.long)
                x_t = diffusion.scheduler.add_noise(x0, noise, tt)
                null = torch.full(x0.shape[:2], network.null_label, device=device, dtype=torch.long)
                network(x_t, tt, null)
                h = captured["h"].flatten(3).flatten(2).cpu().numpy()  # (B, T, C * positions)
                for clip, frames, kept in zip(h, batch_index, keep[s:s + batch_size]):
                    for f, i in zip(clip[kept], frames[kept]):
                        features[i] = f
    finally:
        hook.remove()
    return np.stack(features)


def decode_subject(volumes_path, checkpoint_path, synthetic_path, config: dict, device: str = "cpu", threads: int = 1):
    """Run every decoder; return ``(results_by_decoder, timings)``."""
    from .preprocessing import PreparedData
    from .sampling import load_diffusion
    from .training import choose_device, usable_threads

    torch.set_num_threads(usable_threads(threads))
    data = PreparedData.load(volumes_path)
    rest_id = len(data.class_names) - 1
    categories = list(range(rest_id))
    is_category = data.label_ids != rest_id
    X = data.X[:, data.mask][is_category]
    y = data.label_ids[is_category]
    runs = data.runs[is_category]
    train_runs, test_runs = data.train_runs, data.test_runs
    n_perm, seed = config["n_permutations"], config["seed"]
    results, timings = {}, {}

    def run(name, fn):
        started = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - started
        log.info("%s: accuracy %.3f", name, results[name]["accuracy"])

    for name, estimator in classical_decoders().items():
        run(name, lambda e=estimator: {**heldout_split_decoding(e, X, y, runs, train_runs, test_runs, categories, n_perm, seed),
                                       "leave_one_run_out": leave_one_run_out(e, X, y, runs, categories)})
    Xb, yb, rb = block_average(X, y, runs)
    svm = classical_decoders()["linear_svm"]
    run("linear_svm_block_averaged", lambda: {**heldout_split_decoding(svm, Xb, yb, rb, train_runs, test_runs, categories, n_perm, seed),
                                              "leave_one_run_out": leave_one_run_out(svm, Xb, yb, rb, categories)})
    if config["nilearn_decoder"]:
        import nibabel as nib
        mask_img = nib.Nifti1Image(data.mask.astype(np.uint8), data.affine)
        run("nilearn_decoder", lambda: heldout_split_decoding(NilearnDecoder(mask_img, seed=seed), X, y, runs, train_runs,
                                                              test_runs, categories, min(n_perm, config["n_permutations_slow"]), seed))

    if checkpoint_path is not None:
        device = choose_device(device)
        diffusion, meta = load_diffusion(checkpoint_path, device)
        clip_length = meta["config"]["model"]["clip_length"]

        # (a) diffusion classifier on the held-out blocks
        def diffusion_classifier():
            blocks = [b for b in stimulus_blocks(data.label_ids, data.runs, rest_id) if b[0] in test_runs]
            clips, design, target = block_clips(data.X, data.label_ids, data.runs, blocks, clip_length, rest_id)
            classifier = DiffusionClassifier(diffusion, categories, config["diffusion_pairs"], seed=seed).fit()
            predicted = classifier.predict_blocks(clips, design, target)
            truth = np.array([b[3] for b in blocks])
            block_runs = np.array([b[0] for b in blocks])
            result = score(truth, predicted, categories, block_runs)
            # permutation null: the block labels shuffled within runs against the fixed predictions
            rng = np.random.default_rng(seed)
            null = [float(np.mean(predicted == shuffle_within_runs(truth, block_runs, rng))) for _ in range(max(n_perm, 1000))]
            result.update(chance_level(truth, block_runs))
            result.update({"p_value": float((1 + np.sum(np.array(null) >= result["accuracy"])) / (1 + len(null))),
                           "null_accuracies": null[:n_perm], "n_permutations": len(null), "unit": "stimulus block",
                           "train_runs": train_runs, "test_runs": test_runs,
                           "note": "no refit exists for a pretrained generative classifier; the null shuffles the held-out "
                                   "block labels within runs against the fixed predictions"})
            return result
        run("diffusion_classifier", diffusion_classifier)

        # (b) linear classifier on the denoiser's bottleneck features
        def encoder_probe():
            features = encoder_features(diffusion, data.X, data.runs, clip_length, seed=seed)[is_category]
            # ridge: closed form, so the permutation refits on ~4k features take seconds (a LinearSVC
            # probe took over 10 minutes to converge on shuffled labels); alpha chosen by efficient
            # leave-one-out inside the training runs of each fit, never on held-out data
            probe = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(1, 5, 9)))
            return heldout_split_decoding(probe, features, y, runs, train_runs, test_runs, categories, n_perm, seed)
        run("diffusion_encoder_features", encoder_probe)

    if synthetic_path is not None:
        run("diffusion_augmented_svm", lambda: augmentation_curve(X, y, runs, train_runs, test_runs, categories,
                                                                  synthetic_path, data.mask, config, seed))
    return results, timings


def augmentation_curve(X, y, runs, train_runs, test_runs, categories, synthetic_path, mask, config, seed) -> dict:
    """The linear SVM trained on real training runs plus a growing share of synthetic volumes."""
    with np.load(synthetic_path) as npz:
        syn_X = npz["X"][:, mask]
        syn_y = npz["label_ids"]
        extra = npz["category_clips"]
        extra_y = np.repeat(npz["category_clip_label_ids"], extra.shape[1]) if len(extra) else np.zeros(0, int)
        if len(extra):
            syn_X = np.concatenate([syn_X, extra.reshape(-1, *extra.shape[2:])[:, mask]])
            syn_y = np.concatenate([syn_y, extra_y])
    keep = np.isin(syn_y, categories)
    syn_X, syn_y = syn_X[keep], syn_y[keep]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(syn_X))
    train, test = np.isin(runs, train_runs), np.isin(runs, test_runs)
    curve = []
    for fraction in config["augmentation_fractions"]:
        n = int(round(fraction * len(syn_X)))
        pick = order[:n]
        model = LinearSVC(C=0.01, max_iter=5000).fit(np.concatenate([X[train], syn_X[pick]]), np.concatenate([y[train], syn_y[pick]]))
        curve.append({"synthetic_fraction": fraction, "n_synthetic": n,
                      "accuracy": float(np.mean(model.predict(X[test]) == y[test]))})
    # the reported decoder uses the configured share (chosen before seeing held-out data, not from the curve)
    n_used = int(round(config["augmentation_fraction"] * len(syn_X)))
    extra_X, extra_y = syn_X[order[:n_used]], syn_y[order[:n_used]]
    model = LinearSVC(C=0.01, max_iter=5000).fit(np.concatenate([X[train], extra_X]), np.concatenate([y[train], extra_y]))
    result = score(y[test], model.predict(X[test]), categories, runs[test])
    result.update(chance_level(y[test], runs[test]))
    # permutation test: the real training labels shuffled within runs (synthetic labels kept)
    null = []
    for _ in range(config["n_permutations"]):
        permuted = shuffle_within_runs(y[train], runs[train], rng)
        m = LinearSVC(C=0.01, max_iter=5000).fit(np.concatenate([X[train], extra_X]), np.concatenate([permuted, extra_y]))
        null.append(float(np.mean(m.predict(X[test]) == y[test])))
    result.update({"curve": curve, "synthetic_fraction": config["augmentation_fraction"], "n_synthetic": n_used,
                   "train_runs": [int(r) for r in train_runs], "test_runs": [int(r) for r in test_runs],
                   "p_value": float((1 + np.sum(np.array(null) >= result["accuracy"])) / (1 + len(null))),
                   "null_accuracies": null, "n_permutations": len(null)})
    return result


def write_decoding_outputs(results: dict, timings: dict, class_names, out: dict) -> None:
    """``out`` keys: ``json`` (decoding.json), ``confusion`` (NPZ), ``table`` (TSV), ``figure``, ``figure_confusion``."""
    import json

    import pandas as pd

    from .atomic import atomic_file
    from .figures import plot_confusion_matrices, plot_decoding_accuracy

    for name, seconds in timings.items():
        results[name]["runtime_s"] = seconds
    with atomic_file(out["json"]) as tmp:
        tmp.write_text(json.dumps({"class_names": list(class_names), "decoders": results}, indent=2))
    with atomic_file(out["confusion"]) as tmp:
        np.savez_compressed(tmp, class_names=np.array(class_names),
                            **{name: np.array(r["confusion_matrix"]) for name, r in results.items()})
    rows = [{"decoder": name, "accuracy": r["accuracy"], "accuracy_std_over_runs": float(np.std(r["fold_scores"])),
             "balanced_accuracy": r["balanced_accuracy"], "chance": r["chance"], "p_value": r["p_value"],
             "n_permutations": r["n_permutations"],
             "loro_accuracy": r.get("leave_one_run_out", {}).get("accuracy", np.nan), "runtime_s": r["runtime_s"]}
            for name, r in results.items()]
    with atomic_file(out["table"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    with atomic_file(out["figure"]) as tmp:
        plot_decoding_accuracy(results, tmp)
    with atomic_file(out["figure_confusion"]) as tmp:
        plot_confusion_matrices(results, class_names, tmp)
