"""Stage runner of decode: every decoder of one subject on the held-out runs; outputs written atomically."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..analysis.decoding import (NilearnDecoder, augmentation_curve, block_average, classical_decoders,
                                 heldout_split_decoding, leave_one_run_out, linear_svm, paired_tests, shrinkage_lda)
from ..analysis.attention import SELECTIVITY_NOTE, attention_selectivity, classifier_evidence_maps
from ..analysis.learning_curve import GeneratorSynthesiser, run_subsets, scarce_data_curve
from ..analysis.diffusion_decoding import diffusion_classifier_decoding
from ..analysis.encoder_probe import encoder_probe_decoding
from ..atomic import atomic_file
from ..data.dataset import PreparedData
from ..errors import ModalMergeInputError
from ..diffusion.checkpoints import load_diffusion
from ..runtime import choose_device, inference_precision, model_autocast, usable_threads
from .figures import plot_confusion_matrices, plot_decoding_accuracy

log = logging.getLogger("modalmerge")


def read_synthetic_volumes(synthetic_path, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every synthetic volume of ``synthetic.npz`` (runs, then per-category clips) as rows
    ``(n, n_voxels)`` inside ``mask``, with its label ids."""
    with np.load(synthetic_path) as npz:
        syn_X = npz["X"][:, mask]
        syn_y = npz["label_ids"]
        extra = npz["category_clips"]
        if len(extra):
            syn_X = np.concatenate([syn_X, extra.reshape(-1, *extra.shape[2:])[:, mask]])
            syn_y = np.concatenate([syn_y, np.repeat(npz["category_clip_label_ids"], extra.shape[1])])
    return syn_X, syn_y


def decode_subject(volumes_path, checkpoint_path, synthetic_path, config: dict, device: str = "cpu", threads: int = 1,
                   precision: str = "float32"):
    """Run every decoder on the prepared data at ``volumes_path``; return ``(results_by_decoder, timings)``."""
    return decode_prepared(PreparedData.load(volumes_path), checkpoint_path, synthetic_path, config, device, threads,
                           precision)


BLOCK_DECODERS = {"linear_svm_block_averaged": linear_svm, "shrinkage_lda_block_averaged": shrinkage_lda}


def classical_decoding(data: PreparedData, config: dict, threads: int = 1) -> tuple[dict, dict]:
    """The classical decoders (per-volume and block-averaged linear SVM and shrinkage LDA, logistic
    regression, nilearn's Decoder) on the held-out runs and leave-one-run-out: ``(results_by_decoder, timings)``. They need
    the prepared data only, so the workflow runs them beside the training (rule ``decode_classical``)."""
    X, y, runs, _ = category_volumes(data)
    train_runs, test_runs, categories = data.train_runs, data.test_runs, data.categories
    n_perm, seed = config["n_permutations"], config["seed"]
    jobs = usable_threads(threads)  # permutation and leave-one-run-out refits run in this many processes
    results, timings = {}, {}
    run = timed(results, timings)
    for name, estimator in classical_decoders().items():
        run(name, lambda e=estimator: {**heldout_split_decoding(e, X, y, runs, train_runs, test_runs, categories, n_perm, seed, jobs),
                                       "leave_one_run_out": leave_one_run_out(e, X, y, runs, categories, jobs)})
    Xb, yb, rb = block_average(X, y, runs)
    for name, make in BLOCK_DECODERS.items():
        run(name, lambda make=make: {**heldout_split_decoding(make(), Xb, yb, rb, train_runs, test_runs, categories, n_perm, seed, jobs),
                                     "leave_one_run_out": leave_one_run_out(make(), Xb, yb, rb, categories, jobs)})
    if config["nilearn_decoder"]:
        import nibabel as nib
        mask_img = nib.Nifti1Image(data.mask.astype(np.uint8), data.affine)
        run("nilearn_decoder", lambda: heldout_split_decoding(NilearnDecoder(mask_img, seed=seed), X, y, runs, train_runs,
                                                              test_runs, categories, min(n_perm, config["n_permutations_slow"]), seed, jobs))
    return results, timings


def category_volumes(data: PreparedData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """In-mask voxels, category ids and runs of the volumes showing a category (rest left out), and
    which volumes those are."""
    is_category = data.label_ids != data.rest_id
    return data.X[:, data.mask][is_category], data.label_ids[is_category], data.runs[is_category], is_category


def timed(results: dict, timings: dict):
    """``run(name, fn)``: store ``fn()`` under ``name``, its seconds in ``timings``, and log its accuracy."""
    def run(name, fn):
        started = time.perf_counter()
        results[name] = fn()
        timings[name] = time.perf_counter() - started
        log.info("%s: accuracy %.3f", name, results[name]["accuracy"])
    return run


def decode_prepared(data: PreparedData, checkpoint_path, synthetic_path, config: dict, device: str = "cpu",
                    threads: int = 1, precision: str = "float32", evidence: dict | None = None,
                    classical: tuple[dict, dict] | None = None):
    """Run every decoder on loaded prepared data; return ``(results_by_decoder, timings)``. The
    diffusion classifier's forward passes run in ``precision``
    (:func:`~modalmerge.runtime.inference_precision`), the encoder probe's in float32. A dict passed
    as ``evidence`` receives the classifier's per-voxel evidence (see :func:`classifier_evidence`).
    ``classical``: the classical decoders' ``(results, timings)`` when already computed (rule
    ``decode_classical``); else they run here first."""
    torch.set_num_threads(usable_threads(threads))
    device = choose_device(device)
    precision = inference_precision(device, precision)
    # a missing or broken checkpoint fails here, before the classical decoders' minutes of work
    diffusion, meta = load_diffusion(checkpoint_path, device) if checkpoint_path is not None else (None, None)
    results, timings = (dict(classical[0]), dict(classical[1])) if classical is not None else \
        classical_decoding(data, config, threads)
    categories = data.categories
    X, y, runs, is_category = category_volumes(data)
    train_runs, test_runs = data.train_runs, data.test_runs
    n_perm, seed = config["n_permutations"], config["seed"]
    jobs = usable_threads(threads)
    run = timed(results, timings)

    if diffusion is not None:
        clip_length = meta["config"]["model"]["clip_length"]

        def classify():
            with model_autocast(device, precision):
                found = diffusion_classifier_decoding(
                    diffusion, data.X, data.label_ids, data.runs, test_runs, train_runs, data.rest_id, clip_length,
                    config["diffusion_pairs"], n_perm, seed, voxel_maps=evidence is not None,
                    prune_after=config["diffusion_prune_after"], keep=config["diffusion_keep"],
                    metric=config["diffusion_metric"], t_range=config["diffusion_t_range"])
            if evidence is None:  # the per-voxel bookkeeping only when someone keeps the maps
                return {**found, "inference_precision": precision}
            result, (maps, truth) = found
            evidence.update(classifier_evidence(maps, truth, categories, X, y, runs, train_runs, data.mask, seed))
            return {**result, "inference_precision": precision}
        run("diffusion_classifier", classify)
        # block by block against the block-level classical decoders (same held-out blocks, same order)
        results["diffusion_classifier"]["paired_tests"] = paired_tests(
            results["diffusion_classifier"], {name: results[name] for name in BLOCK_DECODERS})
        run("diffusion_encoder_features", lambda: encoder_probe_decoding(
            diffusion, data.X, data.runs, is_category, y, runs, train_runs, test_runs, categories, clip_length, n_perm, seed,
            jobs))

    if synthetic_path is not None:
        syn_X, syn_y = read_synthetic_volumes(synthetic_path, data.mask)
        run("diffusion_augmented_svm", lambda: augmentation_curve(
            X, y, runs, train_runs, test_runs, categories, syn_X, syn_y, config["augmentation_fractions"],
            config["augmentation_fraction"], n_perm, seed, jobs))
    return results, timings


def classifier_evidence(maps, truth, categories, X, y, runs, train_runs, mask, seed: int) -> dict:
    """The diffusion classifier's evidence per voxel and category (held-out blocks; an exact split of
    its decisions, :func:`~modalmerge.analysis.attention.classifier_evidence_maps`) and whether it points
    at the training runs' category-selective voxels beyond a shuffled-label null."""
    maps = classifier_evidence_maps(maps, truth, categories)
    train = np.isin(runs, train_runs)
    test = attention_selectivity(maps[:, mask], X[train], y[train], runs[train], categories, seed=seed)
    test["note"] = ("evidence = per voxel, the mean denoising error of the other candidate categories minus the "
                    "true category's, on the held-out runs' blocks (summed over voxels: the classifier's margin); "
                    + SELECTIVITY_NOTE)
    return {"maps": maps, "selectivity": test}


def learning_curve_subsets(data: PreparedData, config: dict) -> list[tuple[int, ...]]:
    """The training-run subsets of the learning curve: ``decode.learning_curve_repeats`` per size in
    ``decode.learning_curve_sizes``, and the full training set."""
    sizes = [*config["learning_curve_sizes"], len(data.train_runs)]
    return run_subsets(data.train_runs, sizes, config["learning_curve_repeats"], config["seed"])


def learning_curve(data: PreparedData, config: dict, subsets: list[tuple[int, ...]], threads: int = 1) -> dict:
    """The linear SVM on 1, 2, 3, ... training runs, with and without synthetic runs of the classical
    generator fitted on those runs only (``bench/learning_curve.py`` adds diffusion models trained on
    the same subsets); scored on the held-out runs."""
    X = data.X[:, data.mask]
    train = np.isin(data.runs, data.train_runs)
    synthesise = GeneratorSynthesiser(X[train], data.label_ids[train], data.runs[train],
                                      config["learning_curve_synthetic_runs_per_run"], config["seed"])
    started = time.perf_counter()
    curve = scarce_data_curve(X, data.label_ids, data.runs, data.test_runs, data.categories,
                              subsets, synthesise, n_jobs=usable_threads(threads))
    curve.update({
        "decoder": "linear_svm", "generator": "gaussian_var1",
        "synthetic_runs_per_run": config["learning_curve_synthetic_runs_per_run"],
        "runtime_s": time.perf_counter() - started,
        "note": ("per-volume linear SVM trained on the category volumes of random subsets of the training runs "
                 "(real), on those plus synthetic runs that follow each chosen run's design from the classical "
                 "generator (category means + voxelwise AR(1), Ledoit-Wolf innovations) fitted on the chosen runs "
                 "only (augmented), and on the synthetic runs alone; accuracy on the held-out runs; gain = "
                 "augmented - real, mean and sd over the subsets of each size (at the full size only the "
                 "generator's seed varies)")})
    return curve


def write_decoding_outputs(results: dict, timings: dict, class_names, out: dict, extra: dict | None = None) -> None:
    """``out`` keys: ``json`` (decoding.json), ``confusion`` (NPZ), ``table`` (TSV), ``figure``,
    ``figure_confusion``; ``extra`` (e.g. ``learning_curve``) goes into decoding.json beside the decoders."""
    for name, seconds in timings.items():
        results[name]["runtime_s"] = seconds
    with atomic_file(out["json"]) as tmp:
        tmp.write_text(json.dumps({"class_names": list(class_names), "decoders": results, **(extra or {})}, indent=2))
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


def write_evidence(evidence: dict, data: PreparedData, out: dict) -> None:
    """``out["evidence"]`` (JSON: the selectivity test, or why there is none) and ``out["evidence_maps"]``
    (NPZ: ``maps`` (n_categories, x, y, z) on the prepared grid, ``mask``, ``class_names``; empty when the
    classifier did not run)."""
    with atomic_file(out["evidence"]) as tmp:
        tmp.write_text(json.dumps(evidence.get("selectivity") or {"not_run": "the diffusion classifier did not run "
                                                                              "(decode.diffusion: false)"}, indent=2))
    with atomic_file(out["evidence_maps"]) as tmp:
        np.savez_compressed(tmp, maps=evidence.get("maps", np.zeros((0, *data.mask.shape), np.float32)), mask=data.mask,
                            class_names=np.array(data.category_names))


def decode_classical_stage(volumes_path, config: dict, out_json, threads: int = 1) -> dict:
    """decode_classical for one subject: the classical decoders and the learning curve (neither needs
    the diffusion model), written to ``out_json`` for the decode rule; returns their accuracies."""
    data = PreparedData.load(volumes_path)
    subsets = learning_curve_subsets(data, config) if config["learning_curve"] else None
    torch.set_num_threads(usable_threads(threads))
    results, timings = classical_decoding(data, config, threads)
    curve = learning_curve(data, config, subsets, threads) if subsets else None
    with atomic_file(out_json) as tmp:
        tmp.write_text(json.dumps({"decoders": results, "timings_s": timings, "learning_curve": curve,
                                   "note": "the classical decoders of the decode rule, run beside the training; "
                                           "decoding.json holds every decoder"}, indent=2))
    return {name: round(result["accuracy"], 3) for name, result in results.items()}


def read_classical(path, config: dict) -> tuple[tuple[dict, dict], dict | None]:
    """The decode_classical rule's output: ``((results, timings), learning_curve)``; a file that is not
    one (or lacks a decoder the configuration asks for) is refused with what to do."""
    try:
        found = json.loads(Path(path).read_text())
        results, timings, curve = found["decoders"], found["timings_s"], found["learning_curve"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModalMergeInputError(f"{path} is not an output of the decode_classical rule ({err}); delete it and "
                                   f"rerun the workflow (snakemake --forcerun decode_classical).") from None
    expected = {*classical_decoders(), *BLOCK_DECODERS, *(["nilearn_decoder"] if config["nilearn_decoder"] else [])}
    missing = sorted(expected - set(results))
    unpaired = sorted(name for name in BLOCK_DECODERS if name in results and "held_out_predictions" not in results[name])
    if missing or unpaired or (curve is None) == bool(config["learning_curve"]):
        what = (f"lacks the decoders {missing}" if missing else
                f"lacks the held-out predictions of {unpaired} (an older version wrote it)" if unpaired else
                "does not match decode.learning_curve")
        raise ModalMergeInputError(f"{path} {what}: it was made with another configuration or version; rerun "
                                   f"snakemake --forcerun decode_classical.")
    return (results, timings), curve


def decode_stage(volumes_path, checkpoint_path, synthetic_path, config: dict, out: dict, device: str = "cpu",
                 threads: int = 1, precision: str = "float32", classical_path=None) -> dict:
    """decode for one subject: every decoder, then ``decoding.json``, tables and figures (see
    :func:`write_decoding_outputs` for ``out``); returns the accuracy of each decoder. With
    ``classical_path`` (decode_classical's output) the classical decoders and the learning curve are
    read from it instead of being run here."""
    data = PreparedData.load(volumes_path)  # once: the decoders and the outputs' class names
    classical, curve = read_classical(classical_path, config) if classical_path is not None else (None, None)
    # sizes that do not fit the split fail here, before any decoder runs
    subsets = learning_curve_subsets(data, config) if config["learning_curve"] and classical is None else None
    evidence = {}
    results, timings = decode_prepared(data, checkpoint_path, synthetic_path, config, device, threads, precision, evidence,
                                       classical)
    if subsets:
        curve = learning_curve(data, config, subsets, threads)
    extra = {"learning_curve": curve} if curve else {}
    write_decoding_outputs(results, timings, data.category_names, out, extra)
    if "evidence" in out:
        write_evidence(evidence, data, out)
    return {name: round(result["accuracy"], 3) for name, result in results.items()}
