"""Decoders on tiny data with a planted category signal; shuffled labels; a split that never leaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from modalmerge.analysis.decoding import block_average, heldout_split_decoding, leave_one_run_out, shuffle_within_runs
from modalmerge.analysis.diffusion_decoding import DiffusionClassifier
from modalmerge.data.clips import block_clips, stimulus_blocks
from modalmerge.diffusion.gaussian import GaussianDiffusion
from modalmerge.diffusion.schedulers import Scheduler

CATEGORIES = list(range(8))


def planted(n_runs=6, per_category=6, n_voxels=40, strength=1.0, seed=0):
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(8, n_voxels))
    X, y, runs = [], [], []
    for run in range(1, n_runs + 1):
        for c in CATEGORIES:
            for _ in range(per_category):
                X.append(strength * patterns[c] + rng.normal(size=n_voxels))
                y.append(c)
                runs.append(run)
    return np.array(X), np.array(y), np.array(runs)


def test_planted_signal_is_decoded_above_chance_with_a_small_p_value():
    X, y, runs = planted()
    result = heldout_split_decoding(LinearSVC(C=0.01), X, y, runs, [1, 2, 3, 4], [5, 6], CATEGORIES, 50, 0)
    assert result["accuracy"] > 0.6
    assert result["p_value"] < 0.05 and result["p_value"] == pytest.approx(1 / 51)
    assert result["chance"] == pytest.approx(1 / 8)
    assert len(result["fold_scores"]) == 2 and result["fold_runs"] == [5, 6]
    assert np.array(result["confusion_matrix"]).sum() == 2 * 8 * 6


def test_shuffled_labels_fall_to_chance_with_a_large_p_value():
    X, y, runs = planted()
    shuffled = shuffle_within_runs(y, runs, np.random.default_rng(1))
    result = heldout_split_decoding(LinearSVC(C=0.01), X, shuffled, runs, [1, 2, 3, 4], [5, 6], CATEGORIES, 50, 0)
    assert result["accuracy"] < 0.3
    assert result["p_value"] > 0.05


def test_shuffling_within_runs_keeps_each_runs_label_counts():
    y = np.repeat(np.arange(4), 5)
    runs = np.tile([1, 2], 10)
    shuffled = shuffle_within_runs(y, runs, np.random.default_rng(0))
    for run in (1, 2):
        assert sorted(shuffled[runs == run]) == sorted(y[runs == run])


class SpyEstimator(LinearSVC):
    """Records the rows it was fitted on, to assert on the indices the split used."""

    seen: list = []

    def fit(self, X, y):
        SpyEstimator.seen.append(X[:, -1].copy())
        return super().fit(X[:, :-1], y)

    def predict(self, X):
        return super().predict(X[:, :-1])


def test_the_split_never_puts_a_held_out_run_into_training():
    X, y, runs = planted()
    tagged = np.column_stack([X, runs])  # last column carries the run of each row
    SpyEstimator.seen = []
    heldout_split_decoding(SpyEstimator(C=0.01), tagged, y, runs, [1, 2, 3, 4], [5, 6], CATEGORIES, 3, 0)
    assert len(SpyEstimator.seen) == 4
    for fitted_runs in SpyEstimator.seen:
        assert set(fitted_runs) == {1, 2, 3, 4}
    SpyEstimator.seen = []
    leave_one_run_out(SpyEstimator(C=0.01), tagged, y, runs, CATEGORIES)
    assert sorted(len(set(r)) for r in SpyEstimator.seen) == [5] * 6
    assert all(len({1, 2, 3, 4, 5, 6} - set(r)) == 1 for r in SpyEstimator.seen)


def test_block_average_gives_one_row_per_block():
    X = np.arange(12, dtype=float)[:, None]
    labels = np.array([0, 0, 1, 1, 1, 0, 2, 2, 2, 2, 3, 3])
    runs = np.array([1] * 6 + [2] * 6)
    Xb, yb, rb = block_average(X, labels, runs)
    assert yb.tolist() == [0, 1, 0, 2, 3] and rb.tolist() == [1, 1, 1, 2, 2]
    assert Xb[:, 0].tolist() == [0.5, 3.0, 5.0, 7.5, 10.5]


class TemplateDenoiser(torch.nn.Module):
    """Predicts the noise exactly if the clean clip is the template of the given label."""

    def __init__(self, templates: torch.Tensor, scheduler: Scheduler):
        super().__init__()
        self.templates = templates  # (n_labels, x, y, z)
        self.scheduler = scheduler
        self.null_label = len(templates)

    def forward(self, x_t, t, labels):
        abar = self.scheduler.alphas_cumprod[t].float().reshape(-1, 1, 1, 1, 1)
        x0 = self.templates[labels]
        return (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()


def test_diffusion_classifier_picks_the_category_that_denoises_best():
    rng = np.random.default_rng(0)
    grid = (5, 4, 1)
    templates = torch.as_tensor(rng.normal(size=(9, *grid)), dtype=torch.float32)
    templates[8] = 0  # rest
    scheduler = Scheduler(1000)
    diffusion = GaussianDiffusion(TemplateDenoiser(templates, scheduler), scheduler, torch.ones(grid))
    label_ids = np.array([8, 8, 3, 3, 3, 8, 8, 5, 5, 5, 8, 8] * 2)
    runs = np.repeat([1, 2], 12)
    X = templates[label_ids].numpy() + 0.1 * rng.normal(size=(24, *grid)).astype(np.float32)
    blocks = stimulus_blocks(label_ids, runs, rest_id=8)
    assert [b[3] for b in blocks] == [3, 5, 3, 5]
    clips, design, target = block_clips(X, label_ids, runs, blocks, clip_length=4, rest_id=8)
    assert target.sum(1).tolist() == [3, 3, 3, 3]
    classifier = DiffusionClassifier(diffusion, CATEGORIES, n_pairs=4, batch_size=16).fit()
    assert classifier.predict_blocks(clips, design, target).tolist() == [3, 5, 3, 5]


def test_the_permutation_null_and_leave_one_run_out_do_not_depend_on_the_number_of_processes():
    """Parallel refits draw the same shuffles and fit the same seeded decoder: identical results
    (more features than samples, so liblinear's dual solver and its random order are in play)."""
    from modalmerge.analysis.decoding import linear_svm
    X, y, runs = planted(per_category=2, n_voxels=200)
    one = heldout_split_decoding(linear_svm(), X, y, runs, [1, 2, 3, 4], [5, 6], CATEGORIES, 12, 0, n_jobs=1)
    two = heldout_split_decoding(linear_svm(), X, y, runs, [1, 2, 3, 4], [5, 6], CATEGORIES, 12, 0, n_jobs=2)
    assert one["null_accuracies"] == two["null_accuracies"] and one["p_value"] == two["p_value"]
    assert leave_one_run_out(linear_svm(), X, y, runs, CATEGORIES, n_jobs=2) == leave_one_run_out(
        linear_svm(), X, y, runs, CATEGORIES, n_jobs=1)


def test_the_diffusion_classifier_clones_and_cross_validates_like_any_estimator():
    from sklearn.base import clone
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_score
    from modalmerge.analysis.diffusion_decoding import block_samples
    rng = np.random.default_rng(0)
    grid = (5, 4, 1)
    templates = torch.as_tensor(rng.normal(size=(9, *grid)), dtype=torch.float32)
    templates[8] = 0
    scheduler = Scheduler(1000)
    diffusion = GaussianDiffusion(TemplateDenoiser(templates, scheduler), scheduler, torch.ones(grid))
    label_ids = np.array([8, 8, 3, 3, 3, 8, 8, 5, 5, 5, 8, 8] * 3)
    runs = np.repeat([1, 2, 3], 12)
    X = templates[label_ids].numpy() + 0.1 * rng.normal(size=(36, *grid)).astype(np.float32)
    blocks = stimulus_blocks(label_ids, runs, rest_id=8)
    samples = block_samples(*block_clips(X, label_ids, runs, blocks, clip_length=4, rest_id=8))
    truth = np.array([b[3] for b in blocks])
    classifier = clone(DiffusionClassifier(diffusion, CATEGORIES, n_pairs=2, batch_size=16))
    scores = cross_val_score(classifier, samples, truth, groups=[b[0] for b in blocks], cv=LeaveOneGroupOut())
    assert scores.tolist() == [1.0, 1.0, 1.0]
    wrong = np.where(truth == 3, 5, 3)  # every label swapped: the classifier disagrees with all of them
    assert cross_val_score(classifier, samples, wrong, groups=[b[0] for b in blocks], cv=LeaveOneGroupOut()).max() == 0.0


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info
    return max([pool["num_threads"] for pool in threadpool_info()] or [1])


def test_parallel_refits_run_one_blas_thread_per_process_under_snakemakes_thread_variables(monkeypatch):
    """Snakemake exports OMP_NUM_THREADS etc. = the rule's threads to each job; joblib's workers must
    not inherit it (2 workers x 2 BLAS threads on 2 cores made the refits 20x slower)."""
    from joblib import Parallel, delayed
    from modalmerge.analysis.decoding import one_thread_per_process
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "2")
    with one_thread_per_process():
        counts = Parallel(n_jobs=2)(delayed(_blas_threads)() for _ in range(4))
    assert max(counts) == 1


def test_nilearns_decoder_records_the_screening_percentile_it_really_used(prepared_slice):
    """On the slice's small mask nilearn raises a 20 % screening to 100 % (it measures against a whole
    brain); the result says so instead of a warning per fit."""
    import warnings

    import nibabel as nib

    from modalmerge.analysis.decoding import NilearnDecoder
    from modalmerge.data.dataset import PreparedData
    data = PreparedData.load(prepared_slice["volumes"])
    keep = (data.label_ids != data.rest_id) & np.isin(data.runs, [1, 2, 10])
    X, y, runs = data.X[:, data.mask][keep], data.label_ids[keep], data.runs[keep]
    mask_img = nib.Nifti1Image(data.mask.astype(np.uint8), data.affine)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the screening warning is handled, not printed
        result = heldout_split_decoding(NilearnDecoder(mask_img, screening_percentile=20), X, y, runs, [1, 2], [10],
                                        list(range(8)), 0, 0)
    assert result["screening_percentile_requested"] == 20
    assert result["screening_percentile_effective"] == 100.0
    assert "instead of 20" in result["screening_note"]


def template_problem(n_runs=2, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    grid = (5, 4, 1)
    templates = torch.as_tensor(rng.normal(size=(9, *grid)), dtype=torch.float32)
    templates[8] = 0  # rest
    scheduler = Scheduler(1000)
    diffusion = GaussianDiffusion(TemplateDenoiser(templates, scheduler), scheduler, torch.ones(grid))
    label_ids = np.array([8, 8, 3, 3, 3, 8, 8, 5, 5, 5, 8, 8] * n_runs)
    runs = np.repeat(np.arange(1, n_runs + 1), 12)
    X = templates[label_ids].numpy() + noise * rng.normal(size=(len(label_ids), *grid)).astype(np.float32)
    blocks = stimulus_blocks(label_ids, runs, rest_id=8)
    return diffusion, block_clips(X, label_ids, runs, blocks, clip_length=4, rest_id=8), [b[3] for b in blocks]


def test_candidate_pruning_spends_fewer_forwards_and_keeps_the_kept_candidates_errors(monkeypatch):
    """Pruning after 2 of 6 pairs, keeping 3 of 8 categories: the kept candidates' errors are the
    unpruned classifier's (the pairs are shared), the pruned ones stop after 2 pairs and can never
    win, the network sees 8 x 2 + 3 x 4 clips per block instead of 8 x 6, and the answer is the same."""
    diffusion, (clips, design, target), truth = template_problem(n_runs=3)
    full = DiffusionClassifier(diffusion, CATEGORIES, n_pairs=6, batch_size=16).fit()
    pruned = DiffusionClassifier(diffusion, CATEGORIES, n_pairs=6, batch_size=16, prune_after=2, keep=3).fit()
    seen = []
    original = type(diffusion).denoising_residual
    monkeypatch.setattr(type(diffusion), "denoising_residual", lambda self, x0, *a: seen.append(len(x0)) or original(self, x0, *a))
    all_errors = full.pair_errors(clips, design, target)
    assert sum(seen) == len(clips) * 8 * 6 == len(clips) * full.forwards_per_block()
    seen.clear()
    errors, maps = pruned.pair_errors(clips, design, target, voxel_maps=True)
    assert sum(seen) == len(clips) * (8 * 2 + 3 * 4) == len(clips) * pruned.forwards_per_block()
    kept = ~np.isnan(errors).any(axis=2)
    assert kept.sum(axis=1).tolist() == [3] * len(clips)
    np.testing.assert_array_equal(errors[:, :, :2], all_errors[:, :, :2])  # every candidate on the first pairs
    np.testing.assert_array_equal(errors[kept], all_errors[kept])
    early_best = np.argsort(all_errors[:, :, :2].mean(axis=2), axis=1, kind="stable")[:, :3]
    assert all(set(np.flatnonzero(k)) == set(b) for k, b in zip(kept, early_best))
    decision = pruned.candidate_errors(errors)
    assert np.isinf(decision[~kept]).all() and np.isfinite(decision[kept]).all()
    assert pruned.predict_blocks(clips, design, target).tolist() == full.predict_blocks(clips, design, target).tolist() == truth
    # the evidence maps compare every candidate on the same pairs: the 2 all of them were scored on
    np.testing.assert_allclose(maps.reshape(*maps.shape[:2], -1).sum(2) / 20, errors[:, :, :2].mean(axis=2), rtol=1e-5)
    assert maps.shape == (len(clips), 8, *clips.shape[2:])


def test_candidate_pruning_is_refused_where_it_would_leave_no_pairs():
    from modalmerge.config import validate_config
    from modalmerge.errors import ModalMergeInputError
    diffusion, _, _ = template_problem()
    with pytest.raises(ValueError, match="prune_after is 8"):
        DiffusionClassifier(diffusion, CATEGORIES, n_pairs=8, prune_after=8).fit()
    with pytest.raises(ModalMergeInputError, match="decode.diffusion_prune_after"):
        validate_config({"decode": {"diffusion_pairs": 8, "diffusion_prune_after": 8}})
    assert validate_config({"decode": {"diffusion_pairs": 16, "diffusion_prune_after": 4}})["decode"]["diffusion_keep"] == 2


@pytest.mark.parametrize("t_range, n_steps", [([600, 100], 1000), ([300, 300], 1000), ([100, 1200], 1000),
                                             ([600, 1000], 500)])
def test_a_timestep_range_outside_the_model_is_refused(t_range, n_steps):
    from modalmerge.config import validate_config
    from modalmerge.errors import ModalMergeInputError
    with pytest.raises(ModalMergeInputError, match="decode.diffusion_t_range.*0 <= low < high"):
        validate_config({"decode": {"diffusion_t_range": t_range}, "diffusion": {"n_train_steps": n_steps}})


def test_the_pairs_draw_their_timesteps_from_the_range():
    diffusion, _, _ = template_problem()
    t, _ = DiffusionClassifier(diffusion, CATEGORIES, n_pairs=64, t_range=(600, 1000)).fit().pairs((2, 4, 5, 1))
    assert t.min() >= 600 and t.max() < 1000 and len(set(t.tolist())) > 30


def test_decode_with_decode_classicals_file_writes_what_decode_alone_writes(tmp_path, prepared_slice):
    """The workflow runs the classical decoders beside the training (rule decode_classical) and decode
    reads them back: decoding.json is the same as when decode runs everything itself."""
    import json

    from modalmerge.config import validate_config
    from modalmerge.stages.decode import decode_classical_stage, decode_stage
    config = validate_config({})["decode"]
    config.update(n_permutations=3, nilearn_decoder=False, learning_curve_sizes=[1], learning_curve_repeats=1)

    def outputs(folder):
        return {key: tmp_path / folder / name for key, name in [("json", "decoding.json"), ("confusion", "c.npz"),
                                                                ("table", "t.tsv"), ("figure", "a.png"),
                                                                ("figure_confusion", "b.png")]}

    classical = tmp_path / "classical_decoders.json"
    first = decode_classical_stage(prepared_slice["volumes"], config, classical)
    assert set(first) == {"linear_svm", "logistic_regression", "shrinkage_lda", "linear_svm_block_averaged",
                          "shrinkage_lda_block_averaged"}
    decode_stage(prepared_slice["volumes"], None, None, config, outputs("split"), classical_path=classical)
    decode_stage(prepared_slice["volumes"], None, None, config, outputs("alone"))

    def without_times(folder):
        found = json.loads((tmp_path / folder / "decoding.json").read_text())
        for entry in (*found["decoders"].values(), found["learning_curve"]):
            entry.pop("runtime_s")
        return found
    split, alone = without_times("split"), without_times("alone")
    assert split == alone
    assert split["decoders"]["linear_svm"]["accuracy"] > 0.3 and split["learning_curve"]["by_size"]


class CorrelatedOracle(torch.nn.Module):
    """The exact E[eps | x_t] for volumes x0 ~ N(means[label], cov) (frames independent): with
    x_t = a x0 + b eps, E[eps | x_t] = b (a^2 cov + b^2 I)^-1 (x_t - a means[label])."""

    def __init__(self, scheduler: Scheduler, means: torch.Tensor, cov: np.ndarray):
        super().__init__()
        self.scheduler = scheduler
        self.null_label = len(means)
        self.means = torch.cat([means, means.mean(0, keepdim=True)]).flatten(1).double()
        self.cov = torch.as_tensor(cov, dtype=torch.float64)

    def forward(self, x_t, t, labels):
        abar = self.scheduler.alphas_cumprod[t].double()[:, None, None]
        a, b = abar.sqrt(), (1 - abar).sqrt()
        system = a ** 2 * self.cov + b ** 2 * torch.eye(len(self.cov), dtype=torch.float64)  # (B, V, V)
        centred = x_t.flatten(2).double() - a * self.means[labels]  # (B, T, V)
        return (b * torch.linalg.solve(system, centred.transpose(1, 2)).transpose(1, 2)).reshape(x_t.shape).float()


def correlated_problem(seed: int, n: int = 60, clip_length: int = 4, grid=(5, 4, 1)):
    """Three categories whose means differ by about a tenth of the largest noise std, under a noise
    covariance whose variances span 0.02-20 in random directions: what separates the categories is
    hidden in directions where the voxels' noise is correlated."""
    rng = np.random.default_rng(seed)
    n_voxels = int(np.prod(grid))
    rotation, _ = np.linalg.qr(rng.normal(size=(n_voxels, n_voxels)))
    cov = (rotation * np.geomspace(0.02, 20, n_voxels)) @ rotation.T
    means = rng.normal(size=(3, n_voxels))
    means *= 0.6 / np.linalg.norm(means, axis=1, keepdims=True)
    root = np.linalg.cholesky(cov)

    def blocks():
        truth = np.arange(n) % 3
        clips = means[truth][:, None] + rng.normal(size=(n, clip_length, n_voxels)) @ root.T
        return (clips.reshape(n, clip_length, *grid).astype(np.float32), np.repeat(truth[:, None], clip_length, 1),
                np.ones((n, clip_length), bool), truth)

    scheduler = Scheduler(1000)
    oracle = CorrelatedOracle(scheduler, torch.as_tensor(means.reshape(3, *grid), dtype=torch.float32), cov)
    return GaussianDiffusion(oracle, scheduler, torch.ones(grid)), blocks(), blocks()


def test_the_whitened_metric_finds_categories_hidden_in_correlated_noise():
    """With the exact denoiser of correlated Gaussian data, judging each candidate's residual against
    the residual covariance of training blocks beats the plain squared error (measured on data seeds
    0-4: 0.78 -> 0.90, 0.95 -> 1.00, 0.67 -> 0.88, 0.85 -> 0.92, 0.95 -> 1.00)."""
    from modalmerge.analysis.diffusion_decoding import block_samples
    gains = []
    for seed in (0, 2):
        diffusion, (clips, design, target, truth), (train, train_design, train_target, train_truth) = correlated_problem(seed)
        plain = DiffusionClassifier(diffusion, [0, 1, 2], n_pairs=8, seed=1).fit()
        # the training blocks' frames carry a placeholder label, as block_clips gives them: fit must use the truth
        placeholder = np.full_like(train_design, 3)
        whitened = DiffusionClassifier(diffusion, [0, 1, 2], n_pairs=8, seed=1, metric="whitened").fit(
            block_samples(train, placeholder, train_target), train_truth)
        assert whitened.precisions_.shape == (8, 20, 20)
        if seed == 0:  # the block frames' labels are the truth whatever placeholder they came with
            labelled = DiffusionClassifier(diffusion, [0, 1, 2], n_pairs=8, seed=1, metric="whitened").fit(
                block_samples(train, train_design, train_target), train_truth)
            torch.testing.assert_close(labelled.precisions_, whitened.precisions_)
        gains.append(np.mean(whitened.predict_blocks(clips, design, target) == truth)
                     - np.mean(plain.predict_blocks(clips, design, target) == truth))
        # with an identity metric the whitened errors are the plain ones: only the metric differs
        whitened.precisions_ = torch.eye(20).expand(8, 20, 20)
        np.testing.assert_allclose(whitened.pair_errors(clips[:6], design[:6], target[:6]),
                                   plain.pair_errors(clips[:6], design[:6], target[:6]), rtol=1e-5)
    assert min(gains) >= 0.05 and np.mean(gains) >= 0.1, gains
    with pytest.raises(ValueError, match="training blocks"):
        DiffusionClassifier(diffusion, [0, 1, 2], metric="whitened").fit()
    with pytest.raises(ValueError, match="metric is 'cosine'"):
        DiffusionClassifier(diffusion, [0, 1, 2], metric="cosine").fit()


def test_mcnemar_exact_counts_the_discordant_units_only():
    """8 units only the first decoder gets right, none only the second: p = 2 x 0.5^8 (known answer);
    units both get right or both get wrong do not count; the test is symmetric."""
    from modalmerge.analysis.decoding import mcnemar_exact
    a = np.array([True] * 8 + [True] * 5 + [False] * 3)
    b = np.array([False] * 8 + [True] * 5 + [False] * 3)
    found = mcnemar_exact(a, b)
    assert found == {"only_this_right": 8, "only_other_right": 0, "p_value": pytest.approx(2 * 0.5 ** 8),
                     "smallest_attainable_p_value": pytest.approx(2 * 0.5 ** 11)}  # b misses 11 units
    assert mcnemar_exact(b, a)["p_value"] == pytest.approx(found["p_value"])
    assert mcnemar_exact(a, a)["p_value"] == 1.0 and mcnemar_exact(a, a)["only_this_right"] == 0
    # a reference that misses 5 of 24 units (the block SVM on the held-out blocks): no decoder can beat it
    # at p < 0.01 on them, the best possible split (5 against 0) gives 2 x 0.5^5 = 0.0625
    reference = np.array([True] * 19 + [False] * 5)
    perfect = mcnemar_exact(np.ones(24, bool), reference)
    assert perfect["p_value"] == perfect["smallest_attainable_p_value"] == pytest.approx(0.0625)
    assert mcnemar_exact(np.ones(24, bool), np.ones(24, bool))["smallest_attainable_p_value"] == 1.0


def test_held_out_predictions_carry_the_accuracy_and_pair_up(prepared_slice):
    """heldout_split_decoding keeps what it predicted for each held-out unit; paired_tests reads the
    accuracy difference from them and refuses decoders scored on other units."""
    from modalmerge.analysis.decoding import heldout_split_decoding, linear_svm, paired_tests, shrinkage_lda
    from modalmerge.data.dataset import PreparedData
    data = PreparedData.load(prepared_slice["volumes"])
    keep = data.label_ids != data.rest_id
    X, y, runs = data.X[:, data.mask][keep], data.label_ids[keep], data.runs[keep]
    args = (X, y, runs, data.train_runs, data.test_runs, data.categories, 2, 0)
    svm, lda = heldout_split_decoding(linear_svm(), *args), heldout_split_decoding(shrinkage_lda(), *args)
    for found in (svm, lda):
        assert np.mean(np.equal(found["held_out_predictions"], found["held_out_truth"])) == found["accuracy"]
        assert set(found["held_out_runs"]) == set(data.test_runs)
    tests = paired_tests(svm, {"lda": lda})["lda"]
    assert tests["accuracy_difference"] == pytest.approx(svm["accuracy"] - lda["accuracy"])
    assert tests["n_units"] == len(svm["held_out_truth"])
    assert 0 < tests["p_value"] <= 1
    shifted = {**lda, "held_out_truth": lda["held_out_truth"][1:] + lda["held_out_truth"][:1]}
    with pytest.raises(RuntimeError, match="other held-out units"):
        paired_tests(svm, {"lda": shifted})
