"""Stage runner of report: one self-contained HTML page of the whole experiment (figures embedded as
base64 PNG), plus ``summary.json`` with the headline numbers. Stages that did not run are marked,
not faked. Each section of the page is one function below, in page order."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from .report_html import (STYLE, attention_figures, data_figures, diffusion_strip, evidence_figure, fmt, img, load_json,
                          not_run, png_file_to_base64, table, training_figure)
from .report_parts import (classifier_settings_parts, learning_curve_parts, preprocessed_parts, realism_table,
                           same_size_note, selectivity_table, wins_text,
                           spectrum_parts, temporal_lag_parts, untrained_parts)
from .report_summary import headline, provenance, realism_against_generators

SECTIONS = ("headline", "data", "training", "diffusion-process", "real-vs-synthetic", "fidelity", "decoding",
            "anomalies", "interpretability", "provenance")


def headline_section(summary: dict, fidelity, decoding, auc, split: dict) -> list[str]:
    """The claims we set out to beat, each beside this model, its ceiling and its baseline."""
    parts = []
    rows = []
    if fidelity:
        rows.append(["SSIM (source: 0.82, no baseline given)",
                     f"{fidelity['ssim']:.3f} z-scored category-mean maps = {100 * fidelity['ssim_fraction_of_ceiling']:.0f} % of ceiling",
                     fmt(fidelity["ssim_ceiling"]),
                     "strongest trivial: {} {:.3f}; grand mean {:.3f}".format(
                         *max(fidelity["ssim_baselines"].items(), key=lambda kv: kv[1]),
                         fidelity["ssim_baselines"]["training_grand_mean"]),
                     f"raw-intensity SSIM {fmt(fidelity.get('ssim_raw_intensity'))} (uninformative, see fidelity)"])
        rows.append(["Category-specificity gap of SSIM", fmt(fidelity["category_specificity_gap"]),
                     fmt(fidelity["category_specificity_gap_ceiling"]), "0 for any category-blind generator", ""])
        realism = summary.get("realism_vs_classical_generator")
        if realism:
            rows.append(["Realism against the classical generator (category means + voxelwise AR(1))",
                         f"model better on {realism['model_better']['gaussian_var1']} of {realism['of']} measures", "–",
                         "gaussian_var1 (see fidelity)", "one seed; read beside the fidelity section"])
    if decoding:
        h = summary["decoding"]
        rows.append(["8-way decoding (source: 78 %; held-out runs, block or volume units as named)",
                     f"best diffusion-based: {h.get('best_diffusion', '–')} {fmt(h.get('best_diffusion_accuracy'))} (p={fmt(h.get('best_diffusion_p_value'))})",
                     "–", f"best classical: {h['best_classical']} {h['best_classical_accuracy']:.3f} (p={fmt(h['best_classical_p_value'])})",
                     f"chance {h['chance']:.3f}"])
    if auc:
        h = summary["anomalies"]
        rows.append(["Anomaly AUROC (source: 0.89, anomalies unspecified)",
                     f"diffusion {fmt(h['diffusion_auroc'])}", "1.0 (perfect)",
                     f"best classical: {h['best_baseline']} {h['best_baseline_auroc']:.3f}",
                     "0.5 = chance; all 5 types pooled at default strengths"
                     + (f"; the same detector on the untrained model: {h['untrained_diffusion_auroc']:.3f}"
                        if h.get("untrained_diffusion_auroc") is not None else "")])
    parts.append('<h2 id="headline">Headline: the claims we set out to beat, honestly</h2>')
    parts.append("<p>Every number is measured on held-out runs "
                 f"{html.escape(str(split['test_runs']))} that no stage trained on, beside its ceiling and baselines.</p>")
    parts.append(table(rows, ["measure", "this model", "ceiling", "baseline", "note"]) if rows else not_run("evaluation"))
    return parts


def data_section(prep: dict, split: dict) -> list[str]:
    """Mask, runs and split, with the mean EPI and the volumes per category and run."""
    parts = []
    anatomy, counts = data_figures(prep)
    parts.append('<h2 id="data">Data</h2>')
    parts.append(f"<p>Mask '{html.escape(split['mask'])}' with {split['n_voxels']} voxels; training runs "
                 f"{split['train_runs']}, held-out runs {split['test_runs']}.</p>")
    parts.append(img(anatomy, "Mean EPI over all runs with the analysis mask (red contour), drawn with nilearn.", "mean EPI and mask"))
    parts.append(img(counts, "Volumes per category and run; starred runs are held out from every training step.", "volumes per category and run"))
    return parts


def training_section(training_summary, training_log) -> list[str]:
    """Training numbers and curves."""
    parts = ['<h2 id="training">Training</h2>']
    if training_summary:
        parts.append(table([[training_summary["parameters"], training_summary["steps"], training_summary["train_time_s"],
                             training_summary["device"], training_summary["final_loss"],
                             training_summary["heldout_denoising_error_ema"], training_summary["heldout_denoising_error_raw"]]],
                           ["parameters", "steps", "train time (s)", "device", "final training loss",
                            "held-out error (EMA)", "held-out error (raw)"]))
        if training_summary.get("validation_runs"):
            parts.append(f"<p>Checkpoint chosen on validation run(s) {training_summary['validation_runs']} (training runs the "
                         f"model did not train on): step {training_summary['chosen_step']} of {training_summary['steps']}, "
                         f"validation denoising error {training_summary['validation_denoising_error']:.4f}. The test runs' "
                         "error is logged only.</p>")
        parts.append(img(training_figure(training_log, training_summary),
                         "Left: training loss and held-out denoising error against the trivial baseline (predicting zero noise "
                         "scores 1.0). Right: held-out denoising error per diffusion timestep, EMA vs raw weights.", "training curves"))
    else:
        parts.append(not_run("train_diffusion"))
    return parts


def diffusion_section(snapshots, sampling_summary) -> list[str]:
    """The reverse process as a strip of x_t snapshots, and the sampler's numbers."""
    parts = ['<h2 id="diffusion-process">The diffusion process</h2>']
    strip = diffusion_strip(snapshots) if snapshots else None
    parts.append(img(strip, "Reverse process from pure noise (left, t=1000) to a sample (right, t=0), one row per category "
                 "(middle frame of the clip, z units).", "diffusion strip") if strip else not_run("sample"))
    if sampling_summary:
        parts.append(table([[sampling_summary["sampler"], sampling_summary["steps"], sampling_summary["guidance_scale"],
                             sampling_summary["seconds_per_clip"], sampling_summary["synthetic_std"], sampling_summary["real_heldout_std"]]],
                           ["sampler", "steps", "guidance", "s per clip", "synthetic std", "real held-out std"]))
    return parts


def fidelity_sections(fidelity, figure_slices, figure_ssim, realism=None) -> list[str]:
    """Real vs synthetic maps and every fidelity number beside its ceiling and baselines."""
    parts = ['<h2 id="real-vs-synthetic">Real vs synthetic</h2>']
    parts.append(img(png_file_to_base64(figure_slices), "Category mean maps of held-out real runs (left) and "
                     "synthetic volumes (right), same colour range.", "real vs synthetic") if fidelity else not_run("evaluate_ssim"))
    parts.append('<h2 id="fidelity">Fidelity</h2>')
    if fidelity:
        f = fidelity
        rows = [["SSIM, category-mean maps (z)", f["ssim"], f["ssim_ceiling"], ", ".join(f"{k} {v:.3f}" for k, v in f["ssim_baselines"].items())],
                ["SSIM, single volumes vs nearest held-out", f["ssim_per_sample"], f["ssim_per_sample_ceiling"],
                 ", ".join(f"{k} {v:.3f}" for k, v in f["ssim_per_sample_baselines"].items())],
                ["category-specificity gap", f["category_specificity_gap"], f["category_specificity_gap_ceiling"], "category-blind: 0"],
                ["SSIM, raw intensities", f.get("ssim_raw_intensity"), f.get("ssim_raw_intensity_ceiling"),
                 ", ".join(f"{k} {v:.3f}" for k, v in f.get("ssim_raw_intensity_baselines", {}).items())],
                ["map correlation", f["map_correlation"], f["map_correlation_ceiling"], ", ".join(f"{k} {v:.3f}" for k, v in f["map_correlation_baselines"].items())],
                ["RSA (Spearman of RDMs)", f["rsa"], f["rsa_ceiling"], ", ".join(f"{k} {v:.3f}" for k, v in f["rsa_baselines"].items())],
                ["connectivity similarity", f["connectivity_similarity"], f["connectivity_similarity_ceiling"], ""],
                ["C2ST accuracy, linear (0.5 ideal; blind to covariance)", f["c2st_accuracy"], f["c2st_accuracy_ceiling"], ""],
                ["C2ST accuracy, RBF SVM (0.5 ideal)", f.get("c2st_rbf_accuracy"), f.get("c2st_rbf_accuracy_ceiling"), ""],
                ["MMD² (p)", f"{f['mmd']['mmd2']:.4f} (p={f['mmd']['p_value']:.3f})", f"{f['mmd_ceiling']['mmd2']:.4f} (p={f['mmd_ceiling']['p_value']:.3f})", ""],
                ["TSTR accuracy vs TRTR", f["tstr_accuracy"], f["trtr_accuracy"], f"shuffled labels {f['trtr_shuffled_labels_accuracy']:.3f}"],
                ["category fidelity (not realism)", f["category_fidelity"], f["category_fidelity_real_heldout"], f"chance {f['category_fidelity_chance']:.3f}"],
                ["memorisation ratio (≈1 = no copying)", f["memorisation"]["ratio"], "1.0", ""],
                ["diversity: pairwise SSIM synthetic / real", f["diversity_mean_pairwise_ssim"]["synthetic"], f["diversity_mean_pairwise_ssim"]["heldout_real"], ""]]
        parts.append(table(rows, ["measure", "model", "ceiling (real vs real)", "baselines"]))
        parts.extend(generator_table(fidelity, realism))
        parts.append(f"<p class='weak'>{html.escape(f.get('ssim_raw_intensity_note', ''))}</p>")
        parts.append(f"<p>Protocol: {html.escape(f['protocol']['ssim'])}; data range {f['protocol']['data_range']:.2f} "
                     f"({html.escape(f['protocol']['data_range_source'])}).</p>")
        parts.append(img(png_file_to_base64(figure_ssim), "SSIM of the model beside the real-vs-real ceiling and "
                         "trivial generators (left); per-volume SSIM distributions (right).", "SSIM distributions"))
    else:
        parts.append(not_run("evaluate_ssim"))
    return parts


def generator_table(fidelity, realism=None) -> list[str]:
    """The model beside the classical generator on every realism measure (the comparison that says
    whether the diffusion model earns its place as a generator)."""
    if not fidelity.get("generator_baselines"):
        return []
    realism = realism or realism_against_generators(fidelity)  # the summary's, when the page is built
    names = list(fidelity["generator_baselines"])
    return ["<h3>Against the classical generator</h3>",
            f"<p>{html.escape(fidelity.get('generator_baselines_note', ''))}. {html.escape(wins_text(realism))}.</p>",
            f"<p>{html.escape(same_size_note(fidelity))}</p>", realism_table(realism, names),
            *preprocessed_parts(fidelity, realism, names), *spectrum_parts(fidelity, names)]




def decoding_section(decoding, figure_decoding, figure_confusion) -> list[str]:
    """Every decoder with chance, p-value and leave-one-run-out."""
    parts = ['<h2 id="decoding">Decoding</h2>']
    if decoding:
        rows = [[name, d["accuracy"], float(np.std(d["fold_scores"])), d["balanced_accuracy"], d["chance"], d["p_value"],
                 d["n_permutations"], d.get("leave_one_run_out", {}).get("accuracy"), d.get("runtime_s")]
                for name, d in decoding["decoders"].items()]
        parts.append(table(rows, ["decoder", "held-out accuracy", "± over runs", "balanced", "chance", "p", "permutations",
                                  "leave-one-run-out", "runtime (s)"]))
        parts.extend(classifier_settings_parts(decoding["decoders"]))
        parts.append(img(png_file_to_base64(figure_decoding), "Held-out accuracy per decoder with chance and the "
                         "95th percentile of each permutation null.", "decoding accuracy"))
        parts.append(img(png_file_to_base64(figure_confusion), "Row-normalised confusion matrices.", "confusion matrices"))
        parts.extend(learning_curve_parts(decoding.get("learning_curve")))
    else:
        parts.append(not_run("decode"))
    return parts


def anomalies_section(auc, inputs: dict) -> list[str]:
    """Every detector, pooled and per type, with examples, ROC and strength curves."""
    parts = ['<h2 id="anomalies">Anomalies</h2>']
    if auc:
        kinds = list(auc["default_strengths"])
        rows = [[name, e["auroc"]] + [e["by_type"].get(k, {}).get("auroc") for k in kinds] for name, e in auc["detectors"].items()]
        parts.append(table(rows, ["detector", "pooled AUROC"] + [f"{k} ({auc['default_strengths'][k]:g})" for k in kinds]))
        parts.extend(untrained_parts(auc["detectors"]))
        parts.append(img(png_file_to_base64(inputs.get("figure_examples")), "Injected volume, ground truth and diffusion score map per type.", "anomaly examples"))
        parts.append(img(png_file_to_base64(inputs.get("figure_roc")), "ROC curves, all types pooled at default strength.", "ROC curves"))
        parts.append(img(png_file_to_base64(inputs.get("figure_strength")), "Clip AUROC against strength per type.", "AUROC vs strength"))
    else:
        parts.append(not_run("score_auc"))
    return parts


def interpretability_section(inputs: dict, volumes_path) -> list[str]:
    """Spatial and temporal attention maps per category, the diffusion classifier's evidence maps, and
    whether either points at category-selective voxels."""
    parts = ['<h2 id="interpretability">Interpretability</h2>']
    spatial, temporal = attention_figures(inputs.get("attention_nifti", ""), inputs.get("attention_temporal", ""), volumes_path) \
        if inputs.get("attention_nifti") else (None, None)
    if spatial:
        parts.append(img(spatial, "Spatial attention: how much each location is attended to by the others at the model's "
                         "bottleneck (mean over frames), per category, upsampled to the volume grid.", "spatial attention"))
        parts.append(img(temporal, "Temporal attention: the temporal transformer's T x T weights (rows: query frame), "
                         "averaged over locations, per category.", "temporal attention"))
        interpretability = load_json(inputs.get("interpretability"))
        parts.extend(selectivity_table(interpretability, "attention"))
        parts.extend(temporal_lag_parts((interpretability or {}).get("temporal")))
    else:
        parts.append(not_run("sample"))
    evidence = load_json(inputs.get("evidence"))
    if evidence and "not_run" not in evidence:
        parts.append(img(evidence_figure(inputs["evidence_maps"]), "Diffusion classifier evidence per category: per "
                         "voxel, the other candidates' mean denoising error minus the true category's on the held-out "
                         "blocks (red: the true label helps; summed, the classifier's margin).", "classifier evidence"))
        parts.extend(selectivity_table(evidence, "classifier evidence"))
    else:
        parts.append(not_run("decode (diffusion classifier)"))
    return parts


def provenance_section(prov: dict, seeds: dict, config: dict) -> list[str]:
    """Versions, runtimes, commit, seeds and the configuration."""
    parts = ['<h2 id="provenance">Provenance</h2>']
    parts.append(table([[k, v] for k, v in prov["versions"].items()], ["package", "version"]))
    parts.append(table([[k, v["seconds"], v["max_rss_mb"]] for k, v in prov["runtimes"].items()], ["rule", "seconds", "max RSS (MB)"]))
    parts.append(f"<p>git commit {html.escape(prov['git_commit'])}{' (with uncommitted changes)' if prov['uncommitted_changes'] else ''}; "
                 f"Python {prov['python']}; {html.escape(prov['platform'])}; seeds {html.escape(json.dumps(seeds))}; generated {prov['generated']}.</p>")
    parts.append("<details><summary>configuration</summary><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre></details>")
    return parts


def build_report(inputs: dict, config: dict, out_html, out_summary) -> dict:
    """Write ``index.html`` and ``summary.json``; ``inputs`` maps names to paths (missing ones mean not run)."""
    prep = {k: inputs[k] for k in ("mean", "mask", "table", "volumes", "split")}
    fidelity, decoding, auc = (load_json(inputs.get(key)) for key in ("fidelity", "decoding", "auc"))
    split = load_json(prep["split"])
    seeds = {"train": config["train"]["seed"], "sample": config["sample"]["seed"], "evaluate": config["evaluate"]["seed"],
             "decode": config["decode"]["seed"], "anomalies": config["anomalies"]["seed"]}
    summary = {"subject": inputs["subject"], **headline(fidelity, decoding, auc),
               "provenance": provenance(config, inputs.get("benchmarks", []), seeds)}
    parts = [f"<h1>ModalMerge report: {html.escape(inputs['subject'])}</h1>",
             "<nav>" + "".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in SECTIONS) + "</nav>",
             *headline_section(summary, fidelity, decoding, auc, split),
             *data_section(prep, split),
             *training_section(load_json(inputs.get("training_summary")), inputs.get("training_log")),
             *diffusion_section(inputs.get("snapshots"), load_json(inputs.get("sampling_summary"))),
             *fidelity_sections(fidelity, inputs.get("figure_slices"), inputs.get("figure_ssim"),
                                summary.get("realism_vs_classical_generator")),
             *decoding_section(decoding, inputs.get("figure_decoding"), inputs.get("figure_confusion")),
             *anomalies_section(auc, inputs),
             *interpretability_section(inputs, prep["volumes"]),
             *provenance_section(summary["provenance"], seeds, config)]
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>ModalMerge report {html.escape(inputs['subject'])}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    with atomic_file(out_html) as tmp:
        tmp.write_text(page)
    with atomic_file(out_summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def build_index(reports: list[str], summaries: list[str], out_html, out_summary) -> None:
    """``results/report/index.html``: with one subject, its report itself (self-contained); with several,
    a page of links and headline numbers. ``summary.json`` gathers every subject's headline."""
    gathered = {Path(s).parent.name: json.loads(Path(s).read_text()) for s in summaries}
    with atomic_file(out_summary) as tmp:
        tmp.write_text(json.dumps(gathered if len(gathered) > 1 else next(iter(gathered.values())), indent=2))
    with atomic_file(out_html) as tmp:
        if len(reports) == 1:
            shutil.copyfile(reports[0], tmp)
            return
        rows = []
        for report_path, (subject, summary) in zip(reports, gathered.items()):
            link = f'<a href="{html.escape(Path(report_path).parent.name)}/index.html">{html.escape(subject)}</a>'
            rows.append([link, summary.get("ssim", {}).get("fraction_of_ceiling"),
                         summary.get("decoding", {}).get("best_classical_accuracy"),
                         summary.get("decoding", {}).get("best_diffusion_accuracy"),
                         summary.get("anomalies", {}).get("diffusion_auroc")])
        page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>ModalMerge reports</title>"
                f"<style>{STYLE}</style></head><body><h1>ModalMerge reports</h1>"
                + table(rows, ["subject", "SSIM / ceiling", "best classical decoding", "best diffusion decoding", "diffusion AUROC"])
                + "</body></html>")
        tmp.write_text(page)
