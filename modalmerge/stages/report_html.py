"""HTML pieces of the report: embedded figures, tables, number formatting, the page's style, and
the figures the report draws itself (data, training, diffusion process, attention)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


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
    left.plot(held["step"], held["heldout_loss"], "o-", label="test-run denoising error (EMA; logged only)")
    if "validation_loss" in log and log["validation_loss"].notna().any():
        validation = log.dropna(subset=["validation_loss"])
        left.plot(validation["step"], validation["validation_loss"], "^-", label="validation denoising error (chooses the checkpoint)")
        if summary.get("chosen_step"):
            left.axvline(summary["chosen_step"], color="C2", ls=":", lw=1)
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


def evidence_figure(evidence_npz) -> str | None:
    """The diffusion classifier's evidence map of every category (one slice), on one symmetric scale."""
    from .figures import orthogonal_slices
    with np.load(evidence_npz) as npz:
        maps, names = npz["maps"], npz["class_names"]
    if not len(maps):
        return None
    limit = max(float(np.abs(maps).max()), 1e-12)
    fig, axes = plt.subplots(1, len(maps), figsize=(1.4 * len(maps), 2.2), squeeze=False)
    for ax, volume, name in zip(axes[0], maps, names):
        ax.imshow(orthogonal_slices(volume)[0], cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
        ax.set_title(str(name), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return figure_to_base64(fig)
