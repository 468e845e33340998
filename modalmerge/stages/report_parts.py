"""Parts of the report's sections that read one result each (text, tables, their small figures): the
selectivity tests, the learning curve, temporal attention by lag, the same-size real reference,
what training adds to the diffusion detector, and how the diffusion classifier decided."""

from __future__ import annotations

import html

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .report_html import figure_to_base64, fmt, img, table  # noqa: E402


def selectivity_table(result, what: str) -> list[str]:
    """Whether ``what`` (attention, classifier evidence) points at category-selective voxels (ANOVA F and
    t maps) and at the linear SVM's weights (``svm_weights``, when present), against shuffled-label nulls."""
    if not result:
        return []

    def rows_of(entries, prefix=""):
        return [[prefix + name.replace("_", " "), entry["spearman"], entry["null_99th_percentile"], entry["p_value"],
                 "yes" if entry["above_null_99th"] else "no"]
                for name, entry in entries.items() if isinstance(entry, dict) and "spearman" in entry]

    rows, svm = rows_of(result), result.get("svm_weights")
    verdict = (f"The {what} maps point at category-selective voxels beyond the shuffled-label null."
               if any(row[-1] == "yes" for row in rows) else
               f"The {what} maps do not point at category-selective voxels: neither correlation with the selectivity "
               "maps exceeds the 99th percentile of the shuffled-label null.")
    if svm:
        svm_rows = rows_of(svm, "linear SVM weights: ")
        above = [name.replace("_", " ") for name, entry in svm.items() if isinstance(entry, dict) and entry.get("above_null_99th")]
        verdict += (f" Against the linear SVM's weights ({svm['n_permutations']} refits on shuffled labels): "
                    + (f"{' and '.join(above)} above the null." if above else "not above the null."))
        rows += svm_rows
    return [table(rows, [f"{what} vs selectivity (Spearman)", "observed", "null 99th percentile", "p", "above null"]),
            f"<p>{html.escape(verdict)} {html.escape(result.get('note', ''))} ({result['n_permutations']} permutations for the selectivity null).</p>"]


def learning_curve_parts(curve: dict | None) -> list[str]:
    """The learning curve of ``decoding.json``: held-out accuracy against the number of real training
    runs, with and without synthetic runs (mean ± sd over run subsets), figure and table."""
    if not curve:
        return []
    sizes = sorted(curve["by_size"], key=int)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key, label in (("real", "real runs only"), ("augmented", "real + synthetic"), ("synthetic_only", "synthetic only")):
        means = [curve["by_size"][k][key]["mean"] for k in sizes]
        sds = [curve["by_size"][k][key]["sd"] for k in sizes]
        ax.errorbar([int(k) for k in sizes], means, yerr=sds, marker="o", capsize=3, label=label)
    ax.axhline(curve["chance"], color="grey", linestyle=":", label="chance")
    ax.set_xlabel("real training runs")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=7)
    rows = [[k, curve["by_size"][k]["n_subsets"]]
            + [f"{fmt(curve['by_size'][k][key]['mean'])} ± {fmt(curve['by_size'][k][key]['sd'])}"
               for key in ("real", "augmented", "gain", "synthetic_only")] for k in sizes]
    return ["<h3>Learning curve: does synthetic data help when real data is scarce?</h3>",
            img(figure_to_base64(fig), f"{curve['decoder']} on held-out runs {curve['test_runs']}; synthetic runs from "
                f"{curve['generator']} fitted on the chosen runs only; mean ± sd over run subsets.", "learning curve"),
            table(rows, ["real runs", "subsets", "real only", "real + synthetic", "gain", "synthetic only"]),
            f"<p>{html.escape(curve.get('note', ''))}.</p>"]


def temporal_lag_parts(result: dict | None) -> list[str]:
    """The temporal attention by lag beside the same clips with their frames shuffled, and what it
    says about the data's temporal structure and the hemodynamic lag."""
    if not result:
        return []
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(result["lags"], result["attention_by_lag"], marker="o", label="training-run clips")
    ax.plot(result["lags"], result["attention_by_lag_frames_shuffled"], marker="s", label="same clips, frames shuffled")
    ax.axhline(result["uniform"], color="grey", linestyle=":", label="uniform")
    ax.set_xlabel("lag (key frame - query frame, volumes)")
    ax.set_ylabel("mean attention weight")
    ax.legend(fontsize=7)
    text = (f"Strongest attention to another frame at lag {result['strongest_other_lag']} (the preparation shifted labels "
            f"by {result['hemodynamic_shift_volumes']} volumes for the hemodynamic delay); self-attention "
            f"{result['self_attention']:.3f} against uniform {result['uniform']:.3f}; Spearman of attention with the data's "
            f"autocorrelation over lags 1-{len(result['data_autocorrelation_lags_1_up'])}: "
            f"{fmt(result['spearman_attention_vs_autocorrelation'])}; shuffling the frames changes the profile by "
            f"{result['shuffling_changes_profile_by']:.3f} (total variation; 0 = the attention follows position only).")
    return [img(figure_to_base64(fig), "Temporal attention by lag on training-run clips and on the same clips with "
                "their frames shuffled in time.", "temporal attention by lag"),
            f"<p>{html.escape(text)} {html.escape(result['note'])}.</p>"]


def significant(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 0.1 else f"{value:.3f}"  # MMD² is ~0.002


def wins_text(realism: dict) -> str:
    return ", ".join(f"{name}: model better on {n} of {realism['of']}" for name, n in realism["model_better"].items())


def realism_table(realism: dict, names: list) -> str:
    """The model beside each classical generator, the same-size real runs and the real reference, one
    row per measure of ``realism`` (a block of ``realism_against_generators``)."""
    def same_size(entry):
        reference = entry.get("real_runs_same_size")
        return (f"{significant(reference['mean'])} [{significant(reference['min'])}, {significant(reference['max'])}]"
                if reference else "–")
    rows = [[measure, significant(entry["model"]), *[significant(entry[name]) for name in names],
             same_size(entry), significant(entry["real_or_ceiling"]), entry["better"]]
            for measure, entry in realism["measures"].items()]
    return table(rows, ["measure", "model", *names, "real runs, same size: mean [min, max]", "real held-out / ceiling",
                        "better is"])


def preprocessed_parts(fidelity: dict, realism: dict, names: list) -> list[str]:
    """The set-level measures with every synthetic run preprocessed like a real run, where fidelity.json has them."""
    block, found = realism.get("preprocessed_like_real"), fidelity.get("preprocessed_like_real")
    if not (block and found):
        return []
    return ["<h4>Synthetic runs preprocessed like the real runs</h4>",
            f"<p>{html.escape(found['note'])} (here: {html.escape(str(found['preprocessing']))}). "
            f"{html.escape(wins_text(block))}.</p>", realism_table(block, names)]


def same_size_note(fidelity) -> str:
    reference = fidelity.get("real_runs_reference") or {}
    if not reference.get("groups"):
        return "Real runs of the synthetic set's size: " + reference.get("note", "not in this fidelity.json") + "."
    return (f"Real runs of the synthetic set's size: training runs in groups of {reference['runs_per_group']} "
            f"({', '.join('-'.join(map(str, g)) for g in reference['groups'])}) scored like a generator. "
            f"{reference['note']}. {C2ST_LINEAR_CAVEAT}")


C2ST_LINEAR_CAVEAT = ("The linear C2ST of real groups sits far below 0.5, largely because every real run is z-scored to a zero mean "
                      "per voxel: leaving volumes out of a whole-run set moves its remaining mean away from them, so a "
                      "mean-difference classifier is pushed the wrong way. Synthetic sets have no such constraint, "
                      "so 0.5 stays the linear C2ST's ideal")


def untrained_parts(detectors: dict) -> list[str]:
    """What training adds to the diffusion detector: the trained model against the same detector on the
    untrained model (a training-free baseline), pooled and per type."""
    trained, control = detectors.get("diffusion"), detectors.get("untrained_diffusion")
    if not (trained and control):
        return []
    difference = trained["auroc"] - control["auroc"]
    better = [k for k in trained["by_type"] if trained["by_type"][k]["auroc"] > control["by_type"].get(k, {}).get("auroc", 1)]
    verdict = ("Training adds to the detector" if difference > 0 else
               "Training does not add to the detector: the same steps on the untrained model do as well or better")
    return [f"<p><b>What training adds.</b> {html.escape(control['note'])} Pooled: diffusion {trained['auroc']:.3f}, "
            f"untrained_diffusion {control['auroc']:.3f} (difference {difference:+.3f}). {verdict}; the trained model is "
            f"ahead on {', '.join(better) if better else 'no type'}.</p>"]


def classifier_settings_parts(decoders: dict) -> list[str]:
    """One paragraph: the diffusion classifier's pairs, pruning and metric, as ``decoding.json`` records them."""
    found = decoders.get("diffusion_classifier")
    if not found:
        return []
    pruning = found.get("pruning")
    text = (f"Diffusion classifier: {found.get('n_pairs')} shared (timestep, noise) pairs per candidate, "
            + (f"every category on {pruning['prune_after']} pairs, then the best {pruning['keep']} on all; "
               if pruning else "every category on every pair; ")
            + f"{found.get('forwards_per_block')} forward passes per {found.get('unit', 'block')}"
            + (f", timesteps drawn from {found['t_range'][0]} to {found['t_range'][1] - 1}. " if found.get("t_range") else ". "))
    fit = found.get("metric_fit")
    if found.get("metric") == "whitened" and fit:
        text += (f"Candidates are compared by the residual's Mahalanobis norm under the residual covariance of "
                 f"{fit['training_blocks']} training-run blocks at each pair's timestep ({fit['forwards']} forward passes "
                 "to fit), not by the plain squared residual, which ignores the voxels' correlated noise.")
    else:
        text += "Candidates are compared by the plain squared residual (the diffusion loss)."
    tests = found.get("paired_tests") or {}
    if tests:
        text += (" Block by block against the block-averaged classical decoders on the same held-out blocks (exact "
                 "McNemar test): " + "; ".join(
                     f"{name.replace('_', ' ')}: {100 * t['accuracy_difference']:+.1f} points, {t['only_this_right']} "
                     f"blocks only the diffusion classifier got right and {t['only_other_right']} only the other, "
                     f"p = {t['p_value']:.2g}"
                     + (f" (the smallest p any decoder could reach against it on these blocks: "
                        f"{t['smallest_attainable_p_value']:.2g})" if "smallest_attainable_p_value" in t else "")
                     for name, t in tests.items()) + ".")
    return [f"<p>{html.escape(text)}</p>"]


def spectrum_parts(fidelity, names) -> list[str]:
    """Where each set keeps its residual variance: the share in the training runs' 10 strongest components."""
    spectrum = fidelity.get("residual_spectrum")
    if not spectrum:
        return []
    sets = {"model": spectrum["synthetic"], "real held-out": spectrum["heldout_real"],
            **{name: fidelity["generator_baselines"][name]["residual_spectrum"] for name in names
               if "residual_spectrum" in fidelity["generator_baselines"][name]}}
    rows = [[name, entry["total_variance"], entry["leading_10_share"], entry["leading_50_share"]] for name, entry in sets.items()]
    return [f"<p>{html.escape(spectrum['note'])}.</p>",
            table(rows, ["set", "residual variance (sum over components)", "share in the 10 strongest", "share in the 50 strongest"])]
