"""report: one self-contained HTML page of the whole experiment (figures embedded as base64 PNG),
plus ``summary.json`` with the headline numbers. Stages that did not run are marked, not faked."""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

CLAIMS = {"ssim": 0.82, "decoding_accuracy": 0.78, "anomaly_auroc": 0.89}
PACKAGES = ("modalmerge", "torch", "snakemake", "nilearn", "nibabel", "numpy", "scikit-learn", "scikit-image",
            "matplotlib", "pandas")
SECTIONS = ("headline", "data", "training", "diffusion-process", "real-vs-synthetic", "fidelity", "decoding",
            "anomalies", "interpretability", "provenance")


def load_json(path) -> dict | None:
    return json.loads(Path(path).read_text()) if path and Path(path).exists() else None


def figure_to_base64(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def png_file_to_base64(path) -> str | None:
    return base64.b64encode(Path(path).read_bytes()).decode() if path and Path(path).exists() else None


def img(b64: str | None, caption: str, alt: str) -> str:
    if b64 is None:
        return f'<p class="missing">Figure not available: {html.escape(alt)}.</p>'
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, str) else fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def not_run(stage: str) -> str:
    return f'<p class="not-run">Not run: the {html.escape(stage)} stage produced no output in this run (switched off in config or not requested).</p>'


# --------------------------------------------------------------------------- figures made here
def data_figures(prep: dict) -> tuple[str | None, str | None]:
    from nilearn import plotting
    import nibabel as nib

    mean_img, mask_img = nib.load(prep["mean"]), nib.load(prep["mask"])
    fig = plt.figure(figsize=(8, 3))
    single_slice = 1 in mean_img.shape[:3]
    display = plotting.plot_epi(mean_img, display_mode="z" if single_slice else "ortho",
                                cut_coords=1 if single_slice else None, figure=fig, title="mean EPI with the mask",
                                colorbar=False, draw_cross=False)
    display.add_contours(mask_img, levels=[0.5], colors="r")
    anatomy = figure_to_base64(fig)
    table_ = pd.read_csv(prep["table"], sep="\t")
    counts = table_.groupby(["label", "run"]).size().unstack(fill_value=0)
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.imshow(counts.values, cmap="Blues", aspect="auto")
    ax.set_yticks(range(len(counts.index)), counts.index, fontsize=7)
    ax.set_xticks(range(len(counts.columns)), [f"{r}{'*' if s == 'test' else ''}" for r, s in
                                                 table_.groupby("run")["split"].first().items()], fontsize=7)
    for (i, j), v in np.ndenumerate(counts.values):
        ax.text(j, i, v, ha="center", va="center", fontsize=6)
    ax.set_xlabel("run (* held out from all training)")
    return anatomy, figure_to_base64(fig)


def training_figure(log_path, summary: dict) -> str:
    log = pd.read_csv(log_path, sep="\t")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.plot(log["step"], log["loss"], label="training loss (batch mean)")
    held = log.dropna(subset=["heldout_loss"])
    left.plot(held["step"], held["heldout_loss"], "o-", label="held-out denoising error (EMA)")
    left.axhline(summary.get("trivial_baseline_loss", 1.0), color="k", ls="--", lw=1, label="trivial: predict zero noise")
    left.set_xlabel("step")
    left.set_ylabel("MSE per voxel")
    left.set_ylim(0, 1.2)
    left.legend(fontsize=7)
    by_t = summary.get("heldout_denoising_error_by_timestep", {})
    if by_t:
        right.plot(by_t["timestep"], by_t["error_ema"], "o-", label="EMA weights")
        right.plot(by_t["timestep"], by_t["error_raw"], "s--", label="raw weights")
        right.axhline(1.0, color="k", ls="--", lw=1, label="trivial baseline")
        right.set_xlabel("diffusion timestep t")
        right.set_ylabel("held-out denoising error")
        right.legend(fontsize=7)
    return figure_to_base64(fig)


def diffusion_strip(snapshots_path) -> str | None:
    if not Path(snapshots_path).exists():
        return None
    from .figures import orthogonal_slices
    with np.load(snapshots_path) as npz:
        x_t, timesteps, label_ids, names = npz["x_t"], npz["timesteps"], npz["label_ids"], npz["class_names"]
    if x_t.ndim < 3 or len(x_t) == 0:
        return None
    steps = np.linspace(0, len(x_t) - 1, min(8, len(x_t))).astype(int)
    rows = len(label_ids)
    fig, axes = plt.subplots(rows, len(steps), figsize=(1.3 * len(steps), 1.1 * rows), squeeze=False)
    for r in range(rows):
        for c, s in enumerate(steps):
            frame = x_t[s, r, x_t.shape[2] // 2]
            axes[r, c].imshow(orthogonal_slices(frame)[0], cmap="RdBu_r", vmin=-3, vmax=3, origin="lower")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"t={timesteps[s]}", fontsize=7)
        axes[r, 0].set_ylabel(str(names[label_ids[r]]), fontsize=7)
    return figure_to_base64(fig)


def attention_figures(attention_nifti, attention_temporal, volumes_path) -> tuple[str | None, str | None]:
    if not Path(attention_nifti).exists():
        return None, None
    import nibabel as nib
    from .figures import orthogonal_slices
    from ..data.dataset import PreparedData
    data = PreparedData.load(volumes_path)
    spatial = np.asarray(nib.load(attention_nifti).dataobj)
    box = tuple(slice(int(s), int(s) + n) for s, n in zip(data.bbox_start, data.mask.shape))
    spatial = np.moveaxis(spatial[box], -1, 0)
    names = data.category_names
    fig, axes = plt.subplots(1, len(spatial), figsize=(1.4 * len(spatial), 2.2), squeeze=False)
    for ax, volume, name in zip(axes[0], spatial, names):
        ax.imshow(orthogonal_slices(volume)[0], cmap="inferno", origin="lower")
        ax.set_title(str(name), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    spatial_b64 = figure_to_base64(fig)
    with np.load(attention_temporal) as npz:
        temporal = npz["temporal"]
    fig, axes = plt.subplots(1, len(temporal), figsize=(1.4 * len(temporal), 1.8), squeeze=False)
    for ax, matrix, name in zip(axes[0], temporal, names):
        ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(float(temporal.max()), 1e-6))
        ax.set_title(str(name), fontsize=7)
        ax.set_xlabel("key frame", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("query frame", fontsize=6)
    return spatial_b64, figure_to_base64(fig)


# --------------------------------------------------------------------------- headline numbers
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


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:auto;padding:1em 2em;color:#222;line-height:1.45}
h1{border-bottom:3px solid #345;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#444;margin-top:.3em}
.not-run,.missing{background:#fff4e5;border-left:4px solid #f90;padding:.5em}
.weak{background:#fdecea;border-left:4px solid #c33;padding:.5em}
nav a{margin-right:1em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em}
"""


def build_report(inputs: dict, config: dict, out_html, out_summary) -> dict:
    """Write ``index.html`` and ``summary.json``; ``inputs`` maps names to paths (missing ones mean not run)."""
    prep = {k: inputs[k] for k in ("mean", "mask", "table", "volumes", "split")}
    training_summary = load_json(inputs.get("training_summary"))
    sampling_summary = load_json(inputs.get("sampling_summary"))
    fidelity = load_json(inputs.get("fidelity"))
    decoding = load_json(inputs.get("decoding"))
    auc = load_json(inputs.get("auc"))
    split = load_json(prep["split"])
    seeds = {"train": config["train"]["seed"], "sample": config["sample"]["seed"], "evaluate": config["evaluate"]["seed"],
             "decode": config["decode"]["seed"], "anomalies": config["anomalies"]["seed"]}
    summary = {"subject": inputs["subject"], **headline(fidelity, decoding, auc),
               "provenance": provenance(config, inputs.get("benchmarks", []), seeds)}
    parts = [f"<h1>ModalMerge report: {html.escape(inputs['subject'])}</h1>",
             "<nav>" + "".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in SECTIONS) + "</nav>"]

    # headline
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
                     f"best classical: {h['best_baseline']} {h['best_baseline_auroc']:.3f}", "0.5 = chance; all 5 types pooled at default strengths"])
    parts.append('<h2 id="headline">Headline: the claims we set out to beat, honestly</h2>')
    parts.append("<p>Every number is measured on held-out runs "
                 f"{html.escape(str(split['test_runs']))} that no stage trained on, beside its ceiling and baselines.</p>")
    parts.append(table(rows, ["measure", "this model", "ceiling", "baseline", "note"]) if rows else not_run("evaluation"))

    # data
    anatomy, counts = data_figures(prep)
    parts.append('<h2 id="data">Data</h2>')
    parts.append(f"<p>Mask '{html.escape(split['mask'])}' with {split['n_voxels']} voxels; training runs "
                 f"{split['train_runs']}, held-out runs {split['test_runs']}.</p>")
    parts.append(img(anatomy, "Mean EPI over all runs with the analysis mask (red contour), drawn with nilearn.", "mean EPI and mask"))
    parts.append(img(counts, "Volumes per category and run; starred runs are held out from every training step.", "volumes per category and run"))

    # training
    parts.append('<h2 id="training">Training</h2>')
    if training_summary:
        parts.append(table([[training_summary["parameters"], training_summary["steps"], training_summary["train_time_s"],
                             training_summary["device"], training_summary["final_loss"],
                             training_summary["heldout_denoising_error_ema"], training_summary["heldout_denoising_error_raw"]]],
                           ["parameters", "steps", "train time (s)", "device", "final training loss",
                            "held-out error (EMA)", "held-out error (raw)"]))
        parts.append(img(training_figure(inputs["training_log"], training_summary),
                         "Left: training loss and held-out denoising error against the trivial baseline (predicting zero noise "
                         "scores 1.0). Right: held-out denoising error per diffusion timestep, EMA vs raw weights.", "training curves"))
    else:
        parts.append(not_run("train_diffusion"))

    # diffusion process
    parts.append('<h2 id="diffusion-process">The diffusion process</h2>')
    strip = diffusion_strip(inputs.get("snapshots")) if inputs.get("snapshots") else None
    parts.append(img(strip, "Reverse process from pure noise (left, t=1000) to a sample (right, t=0), one row per category "
                 "(middle frame of the clip, z units).", "diffusion strip") if strip else not_run("sample"))
    if sampling_summary:
        parts.append(table([[sampling_summary["sampler"], sampling_summary["steps"], sampling_summary["guidance_scale"],
                             sampling_summary["seconds_per_clip"], sampling_summary["synthetic_std"], sampling_summary["real_heldout_std"]]],
                           ["sampler", "steps", "guidance", "s per clip", "synthetic std", "real held-out std"]))

    # real vs synthetic + fidelity
    parts.append('<h2 id="real-vs-synthetic">Real vs synthetic</h2>')
    parts.append(img(png_file_to_base64(inputs.get("figure_slices")), "Category mean maps of held-out real runs (left) and "
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
                ["C2ST accuracy (0.5 ideal)", f["c2st_accuracy"], f["c2st_accuracy_ceiling"], ""],
                ["MMD² (p)", f"{f['mmd']['mmd2']:.4f} (p={f['mmd']['p_value']:.3f})", f"{f['mmd_ceiling']['mmd2']:.4f} (p={f['mmd_ceiling']['p_value']:.3f})", ""],
                ["TSTR accuracy vs TRTR", f["tstr_accuracy"], f["trtr_accuracy"], f"shuffled labels {f['trtr_shuffled_labels_accuracy']:.3f}"],
                ["category fidelity (not realism)", f["category_fidelity"], f["category_fidelity_real_heldout"], f"chance {f['category_fidelity_chance']:.3f}"],
                ["memorisation ratio (≈1 = no copying)", f["memorisation"]["ratio"], "1.0", ""],
                ["diversity: pairwise SSIM synthetic / real", f["diversity_mean_pairwise_ssim"]["synthetic"], f["diversity_mean_pairwise_ssim"]["heldout_real"], ""]]
        parts.append(table(rows, ["measure", "model", "ceiling (real vs real)", "baselines"]))
        parts.append(f"<p class='weak'>{html.escape(f.get('ssim_raw_intensity_note', ''))}</p>")
        parts.append(f"<p>Protocol: {html.escape(f['protocol']['ssim'])}; data range {f['protocol']['data_range']:.2f} "
                     f"({html.escape(f['protocol']['data_range_source'])}).</p>")
        parts.append(img(png_file_to_base64(inputs.get("figure_ssim")), "SSIM of the model beside the real-vs-real ceiling and "
                         "trivial generators (left); per-volume SSIM distributions (right).", "SSIM distributions"))
    else:
        parts.append(not_run("evaluate_ssim"))

    # decoding
    parts.append('<h2 id="decoding">Decoding</h2>')
    if decoding:
        rows = [[name, d["accuracy"], float(np.std(d["fold_scores"])), d["balanced_accuracy"], d["chance"], d["p_value"],
                 d["n_permutations"], d.get("leave_one_run_out", {}).get("accuracy"), d.get("runtime_s")]
                for name, d in decoding["decoders"].items()]
        parts.append(table(rows, ["decoder", "held-out accuracy", "± over runs", "balanced", "chance", "p", "permutations",
                                  "leave-one-run-out", "runtime (s)"]))
        parts.append(img(png_file_to_base64(inputs.get("figure_decoding")), "Held-out accuracy per decoder with chance and the "
                         "95th percentile of each permutation null.", "decoding accuracy"))
        parts.append(img(png_file_to_base64(inputs.get("figure_confusion")), "Row-normalised confusion matrices.", "confusion matrices"))
    else:
        parts.append(not_run("decode"))

    # anomalies
    parts.append('<h2 id="anomalies">Anomalies</h2>')
    if auc:
        kinds = list(auc["default_strengths"])
        rows = [[name, e["auroc"]] + [e["by_type"].get(k, {}).get("auroc") for k in kinds] for name, e in auc["detectors"].items()]
        parts.append(table(rows, ["detector", "pooled AUROC"] + [f"{k} ({auc['default_strengths'][k]:g})" for k in kinds]))
        parts.append(img(png_file_to_base64(inputs.get("figure_examples")), "Injected volume, ground truth and diffusion score map per type.", "anomaly examples"))
        parts.append(img(png_file_to_base64(inputs.get("figure_roc")), "ROC curves, all types pooled at default strength.", "ROC curves"))
        parts.append(img(png_file_to_base64(inputs.get("figure_strength")), "Clip AUROC against strength per type.", "AUROC vs strength"))
    else:
        parts.append(not_run("score_auc"))

    # interpretability
    parts.append('<h2 id="interpretability">Interpretability</h2>')
    spatial, temporal = attention_figures(inputs.get("attention_nifti", ""), inputs.get("attention_temporal", ""), prep["volumes"]) \
        if inputs.get("attention_nifti") else (None, None)
    if spatial:
        parts.append(img(spatial, "Spatial attention: how much each location is attended to by the others at the model's "
                         "bottleneck (mean over frames), per category, upsampled to the volume grid.", "spatial attention"))
        parts.append(img(temporal, "Temporal attention: the temporal transformer's T x T weights (rows: query frame), "
                         "averaged over locations, per category.", "temporal attention"))
    else:
        parts.append(not_run("sample"))

    # provenance
    prov = summary["provenance"]
    parts.append('<h2 id="provenance">Provenance</h2>')
    parts.append(table([[k, v] for k, v in prov["versions"].items()], ["package", "version"]))
    parts.append(table([[k, v["seconds"], v["max_rss_mb"]] for k, v in prov["runtimes"].items()], ["rule", "seconds", "max RSS (MB)"]))
    parts.append(f"<p>git commit {html.escape(prov['git_commit'])}{' (with uncommitted changes)' if prov['uncommitted_changes'] else ''}; "
                 f"Python {prov['python']}; {html.escape(prov['platform'])}; seeds {html.escape(json.dumps(seeds))}; generated {prov['generated']}.</p>")
    parts.append("<details><summary>configuration</summary><pre>" + html.escape(json.dumps(config, indent=2)) + "</pre></details>")

    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>ModalMerge report {html.escape(inputs['subject'])}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    from ..atomic import atomic_file
    with atomic_file(out_html) as tmp:
        tmp.write_text(page)
    with atomic_file(out_summary) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def build_index(reports: list[str], summaries: list[str], out_html, out_summary) -> None:
    """``results/report/index.html``: with one subject, its report itself (self-contained); with several,
    a page of links and headline numbers. ``summary.json`` gathers every subject's headline."""
    import shutil
    from ..atomic import atomic_file

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
