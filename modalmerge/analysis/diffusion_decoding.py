"""Decoding with the trained diffusion model: a generative (diffusion) classifier of stimulus blocks
(the probe of the denoiser's features is in :mod:`.encoder_probe`). Arrays and a trained model in,
dicts out."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.covariance import LedoitWolf
from sklearn.utils.validation import check_is_fitted

from ..data.clips import block_clips, stimulus_blocks
from .decoding import chance_level, fixed_predictions_null, held_out_predictions, permutation_p_value, score


class DiffusionClassifier(BaseEstimator, ClassifierMixin):
    """Classify a stimulus block by which category's conditional model denoises it best.

    For each block, a clip of T volumes centred on it is noised with ``n_pairs`` fixed
    (timestep, noise) pairs shared by all candidates; the clip's block frames are labelled
    with each candidate category in turn (other frames keep their known design label, e.g.
    rest), and the category with the lowest denoising error on the block frames wins. The
    onsets are known, only the category is predicted. ``fit`` only records the classes: the
    trained diffusion model is the classifier.

    ``batch_size`` clips go through the network together: 32 was measured 1.1-1.2x faster per clip
    than 64 on 2 CPU cores in bf16 (and 128 1.3x slower), with identical errors.

    Candidate pruning (``prune_after`` pairs, then ``keep`` candidates), as in Li et al. (2023): every
    candidate is scored on the first ``prune_after`` pairs, only the ``keep`` candidates with the
    lowest mean error go on to all ``n_pairs``, and the lowest mean over all pairs wins among them.
    The pairs are shared, so a kept candidate's errors are the ones the unpruned classifier computes;
    forward passes per block fall from ``C * n_pairs`` to ``C * prune_after + keep * (n_pairs -
    prune_after)``. ``None`` (default) scores every candidate on every pair.

    The error compared (``metric``): ``"euclidean"`` (default) is the mean squared residual of the
    network's output over the block's voxels, the diffusion loss. ``"whitened"`` is the residual's
    Mahalanobis norm, r' P_t r / n_voxels, under the precision P_t (inverse Ledoit-Wolf covariance)
    of the residuals the model leaves on *training* blocks at the pair's timestep t with their true
    labels: the residual of a wrong candidate differs from the true one's by the model's idea of the
    difference between the two categories, and judging that difference against the residual's own
    covariance is the likelihood-ratio test for Gaussian residuals (a Euclidean norm behaves like a
    nearest-mean classifier that ignores the voxels' correlations). ``fit(X, y)`` then takes training
    blocks (``X`` triples, ``y`` their categories) and spends ``metric_draws`` noise draws x
    ``n_pairs`` forward passes on each.

    As an sklearn estimator (``clone``, ``cross_val_score``), a sample is one block: ``X`` is a
    sequence of ``(clip (T, x, y, z), design labels (T,), block frames (T,))`` triples, as
    :func:`block_samples` makes them.
    """

    def __init__(self, diffusion=None, categories=None, n_pairs: int = 8, t_range=(100, 600), batch_size: int = 32,
                 seed: int = 0, prune_after: int | None = None, keep: int = 2, metric: str = "euclidean",
                 metric_draws: int = 1):
        self.diffusion = diffusion
        self.categories = categories
        self.n_pairs = n_pairs
        self.t_range = t_range
        self.batch_size = batch_size
        self.seed = seed
        self.prune_after = prune_after
        self.keep = keep
        self.metric = metric
        self.metric_draws = metric_draws

    def fit(self, X=None, y=None):
        if self.prune_after is not None and not 1 <= self.prune_after < self.n_pairs:
            raise ValueError(f"prune_after is {self.prune_after}: candidates are pruned after 1 to n_pairs - 1 "
                             f"({self.n_pairs - 1}) pairs; use None to score every candidate on every pair.")
        if self.keep < 1:
            raise ValueError(f"keep is {self.keep}: at least one candidate must go on after pruning.")
        if self.metric not in ("euclidean", "whitened"):
            raise ValueError(f"metric is {self.metric!r}: use 'euclidean' (the diffusion loss) or 'whitened' "
                             "(the residual's Mahalanobis norm, fitted on training blocks).")
        self.classes_ = np.asarray(self.categories)
        self.precisions_ = None
        if self.metric == "whitened":
            if X is None or y is None or len(X) == 0:
                raise ValueError("metric 'whitened' is fitted on training blocks: pass X (clip, design, block frames) "
                                 "triples of the training runs and y their categories.")
            clips, design, target = (np.stack(part) for part in zip(*X))
            self.precisions_ = self._residual_precisions(clips, design, target, np.asarray(y))
        return self

    @torch.no_grad()
    def _residual_precisions(self, clips, design, target, y) -> torch.Tensor:
        """``(n_pairs, V, V)``: for each pair's timestep, the inverse Ledoit-Wolf covariance of the
        block frames' residuals over the mask's V voxels, with the true labels and fresh noise
        (``metric_draws`` draws per block, seeded apart from the pairs)."""
        t, _ = self.pairs(clips.shape[1:])
        inside = self.diffusion.mask.bool()
        labels = torch.as_tensor(design).clone()
        frames = torch.as_tensor(target).bool()
        labels[frames] = torch.as_tensor(y)[:, None].expand_as(labels)[frames]
        generator = torch.Generator().manual_seed(self.seed + 1)
        device = self.diffusion.mask.device
        precisions = []
        for t_pair in t.tolist():
            rows = []
            for _ in range(self.metric_draws):
                for s in range(0, len(clips), self.batch_size):
                    part = slice(s, s + self.batch_size)
                    x0 = torch.as_tensor(clips[part])
                    noise = torch.randn(x0.shape, generator=generator)
                    t_batch = torch.full((len(x0),), t_pair, dtype=torch.long)
                    residual = self.diffusion.denoising_residual(x0.to(device), labels[part].to(device), t_batch.to(device),
                                                                 noise.to(device)).float().cpu()
                    rows.append(residual[frames[part]][:, inside.cpu()])
            covariance = LedoitWolf(assume_centered=True).fit(torch.cat(rows).double().numpy()).covariance_
            precisions.append(torch.as_tensor(np.linalg.inv(covariance), dtype=torch.float32))
        return torch.stack(precisions)

    @property
    def pruning(self) -> bool:
        return self.prune_after is not None and self.keep < len(self.classes_)

    def forwards_per_block(self) -> int:
        """Network forward passes (one clip each) the classifier spends on one block."""
        check_is_fitted(self, "classes_")
        n = len(self.classes_)
        return n * self.prune_after + self.keep * (self.n_pairs - self.prune_after) if self.pruning else n * self.n_pairs

    @staticmethod
    def candidate_errors(errors: np.ndarray) -> np.ndarray:
        """``(n_blocks, n_categories)`` mean error over the pairs from :meth:`pair_errors`; a candidate
        pruned before the last pair (NaN errors) gets +inf, so it never wins."""
        pruned = np.isnan(errors).any(axis=2)
        return np.where(pruned, np.inf, errors.mean(axis=2))

    def pairs(self, clip_shape) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n_pairs`` shared (timestep, noise) pairs: ``(t (P,), noise (P, T, x, y, z))``."""
        generator = torch.Generator().manual_seed(self.seed)
        t = torch.randint(self.t_range[0], self.t_range[1], (self.n_pairs,), generator=generator)
        return t, torch.randn((self.n_pairs, *clip_shape), generator=generator)

    @torch.no_grad()
    def block_errors(self, clips: np.ndarray, design: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Denoising errors ``(n_blocks, n_categories)`` of clips ``(n, T, x, y, z)`` with design labels
        ``(n, T)`` and boolean ``target`` frames ``(n, T)`` (the block's frames): the mean over pairs."""
        return self.candidate_errors(self.pair_errors(clips, design, target))

    @torch.no_grad()
    def pair_errors(self, clips: np.ndarray, design: np.ndarray, target: np.ndarray, voxel_maps: bool = False):
        """Denoising errors per pair ``(n_blocks, n_categories, n_pairs)`` (accuracy against the number
        of pairs, or a timestep weighting, can be read from them without running the model again).
        With pruning, the pairs a pruned candidate was not scored on are NaN (:meth:`candidate_errors`).

        With ``voxel_maps``, also the squared error of every voxel ``(n_blocks, n_categories, x, y, z)``
        averaged over the block's frames and the pairs: summed over the mask and divided by its size,
        each map is that block's error for that candidate (see :func:`.attention.classifier_evidence_maps`).
        With pruning the maps average the first ``prune_after`` pairs, the ones every candidate was
        scored on, so candidates are compared on the same pairs (maps of a kept candidate over more
        pairs would mix in other timesteps and bias any comparison between candidates)."""
        check_is_fitted(self, "classes_")
        t, noise = self.pairs(clips.shape[1:])
        n_blocks, n_classes = len(clips), len(self.classes_)
        errors = np.full((n_blocks, n_classes, self.n_pairs), np.nan)
        maps = np.zeros((n_blocks, n_classes, *clips.shape[2:])) if voxel_maps else None
        if not self.pruning:
            jobs = [(b, c, p) for b in range(n_blocks) for c in range(n_classes) for p in range(self.n_pairs)]
            self._score(jobs, clips, design, target, t, noise, errors, maps, np.full((n_blocks, n_classes), self.n_pairs))
            return (errors, maps) if voxel_maps else errors
        early = [(b, c, p) for b in range(n_blocks) for c in range(n_classes) for p in range(self.prune_after)]
        self._score(early, clips, design, target, t, noise, errors, maps, np.full((n_blocks, n_classes), self.prune_after))
        kept = np.argsort(errors[:, :, :self.prune_after].mean(axis=2), axis=1, kind="stable")[:, :self.keep]
        late = [(b, c, p) for b in range(n_blocks) for c in kept[b] for p in range(self.prune_after, self.n_pairs)]
        self._score(late, clips, design, target, t, noise, errors, None, None)
        return (errors, maps) if voxel_maps else errors

    def _score(self, jobs, clips, design, target, t, noise, errors, maps, divisor) -> None:
        """Run the network on ``(block, candidate, pair)`` jobs in batches; fill ``errors`` and add each
        job's voxel map divided by ``divisor[block, candidate]`` to ``maps``."""
        device = self.diffusion.mask.device
        n_voxels = self.diffusion.mask.sum()
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            b_idx = torch.tensor([j[0] for j in chunk])
            p_idx = torch.tensor([j[2] for j in chunk])
            labels = torch.as_tensor(design)[b_idx].clone()
            frames = torch.as_tensor(target)[b_idx]
            for row, (_, c, _) in enumerate(chunk):
                labels[row, frames[row]] = int(self.classes_[c])
            residual = self.diffusion.denoising_residual(torch.as_tensor(clips)[b_idx].to(device), labels.to(device),
                                                         t[p_idx].to(device), noise[p_idx].to(device)).float()
            if self.precisions_ is None:
                squared = residual ** 2
            else:  # r_i (P r)_i per voxel: summed over the mask, the Mahalanobis norm r' P r
                inside = self.diffusion.mask.bool()
                r = residual[:, :, inside]  # (B, T, V)
                weighted = torch.einsum("bvw,btw->btv", self.precisions_[p_idx].to(r.device), r)
                squared = torch.zeros_like(residual)
                squared[:, :, inside] = r * weighted
            per_frame = squared.flatten(2).sum(2) / n_voxels  # euclidean: = diffusion.denoising_error
            per_clip = (per_frame.cpu() * frames).sum(1) / frames.sum(1)
            b_np, c_np, p_np = (np.array(part) for part in zip(*chunk))
            errors[b_np, c_np, p_np] = per_clip.double().numpy()
            if maps is not None:
                weights = frames / frames.sum(1, keepdim=True)
                per_voxel = (squared.float().cpu() * weights[(...,) + (None,) * (squared.ndim - 2)]).sum(1).numpy()
                scale = divisor[b_np, c_np].astype(per_voxel.dtype)[(...,) + (None,) * (per_voxel.ndim - 1)]
                np.add.at(maps, (b_np, c_np), per_voxel / scale)

    def predict_blocks(self, clips, design, target) -> np.ndarray:
        return self.classes_[self.block_errors(clips, design, target).argmin(axis=1)]

    def predict(self, X) -> np.ndarray:
        """Categories of blocks given as ``(clip, design, block frames)`` triples."""
        clips, design, target = (np.stack(part) for part in zip(*X))
        return self.predict_blocks(clips, design, target)


def block_samples(clips: np.ndarray, design: np.ndarray, target: np.ndarray) -> list[tuple]:
    """Blocks as sklearn samples for :class:`DiffusionClassifier`: one ``(clip, design, frames)`` triple each."""
    return list(zip(clips, design, target))


def diffusion_classifier_decoding(diffusion, X, label_ids, runs, test_runs, train_runs, rest_id: int,
                                  clip_length: int, n_pairs: int, n_permutations: int, seed: int,
                                  voxel_maps: bool = False, prune_after: int | None = None, keep: int = 2,
                                  metric: str = "euclidean", t_range=(100, 600)):
    """The diffusion classifier on every stimulus block of the held-out runs, scored like the others.

    No refit exists for a pretrained generative classifier, so the null shuffles the held-out block
    labels within runs against the fixed predictions. With ``voxel_maps``, returns ``(result,
    (error maps (n_blocks, n_categories, x, y, z), true categories (n_blocks,)))`` (no extra forward
    passes: the maps are the errors the classifier compares, kept per voxel). ``metric="whitened"``
    fits the residual metric on the stimulus blocks of ``train_runs`` (never the held-out runs).
    """
    all_blocks = stimulus_blocks(label_ids, runs, rest_id)
    blocks = [b for b in all_blocks if b[0] in test_runs]
    clips, design, target = block_clips(X, label_ids, runs, blocks, clip_length, rest_id)
    categories = list(range(rest_id))
    classifier = DiffusionClassifier(diffusion, categories, n_pairs, t_range=tuple(t_range), seed=seed,
                                     prune_after=prune_after, keep=keep, metric=metric)
    fit_blocks = []
    if metric == "whitened":
        fit_blocks = [b for b in all_blocks if b[0] in train_runs]
        classifier.fit(block_samples(*block_clips(X, label_ids, runs, fit_blocks, clip_length, rest_id)),
                       np.array([b[3] for b in fit_blocks]))
    else:
        classifier.fit()
    found = classifier.pair_errors(clips, design, target, voxel_maps=voxel_maps)
    errors, maps = found if voxel_maps else (found, None)
    predicted = classifier.classes_[classifier.candidate_errors(errors).argmin(axis=1)]
    truth = np.array([b[3] for b in blocks])
    block_runs = np.array([b[0] for b in blocks])
    result = score(truth, predicted, categories, block_runs)
    result.update(held_out_predictions(predicted, truth, block_runs))
    rng = np.random.default_rng(seed)
    null = fixed_predictions_null(predicted, truth, block_runs, max(n_permutations, 1000), rng)
    result.update(chance_level(truth, block_runs))
    result.update({"p_value": permutation_p_value(null, result["accuracy"]),
                   "null_accuracies": null[:n_permutations], "n_permutations": len(null), "unit": "stimulus block",
                   "n_pairs": n_pairs, "forwards_per_block": classifier.forwards_per_block(),
                   "pruning": {"prune_after": prune_after, "keep": keep} if classifier.pruning else None,
                   "metric": metric, "t_range": [int(v) for v in t_range],
                   "metric_fit": ({"training_blocks": len(fit_blocks), "noise_draws": classifier.metric_draws,
                                   "forwards": len(fit_blocks) * classifier.metric_draws * n_pairs}
                                  if metric == "whitened" else None),
                   "train_runs": train_runs, "test_runs": test_runs,
                   "note": "no refit exists for a pretrained generative classifier; the null shuffles the held-out "
                           "block labels within runs against the fixed predictions"})
    return (result, (maps, truth)) if voxel_maps else result
