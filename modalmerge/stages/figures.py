"""Figures of the evaluation stages (PNG), drawn with matplotlib on the bounding-box grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def save_figure(fig, path) -> None:
    """Lay out, write as PNG (110 dpi) and close."""
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def orthogonal_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The middle slice along every non-singleton axis (one 2D image for a single-slice grid)."""
    if 1 in volume.shape:
        return [np.squeeze(volume).T]
    centre = [n // 2 for n in volume.shape]
    return [volume[centre[0]].T, volume[:, centre[1]].T, volume[:, :, centre[2]].T]


def plot_real_vs_synthetic(data, synthetic: dict, path, vmax: float | None = None) -> None:
    """Per category: held-out real mean map beside the synthetic mean map (z units)."""
    categories = list(range(len(data.class_names) - 1))
    real = data.X[data.is_test]
    real_labels = data.label_ids[data.is_test]
    views = len(orthogonal_slices(data.X[0]))
    fig, axes = plt.subplots(len(categories), 2 * views, figsize=(2.2 * 2 * views, 1.6 * len(categories)), squeeze=False)
    maps = []
    for c in categories:
        maps.append(((real[real_labels == c].mean(0) * data.mask), (synthetic["X"][synthetic["label_ids"] == c].mean(0) * data.mask)))
    vmax = vmax or float(np.percentile(np.abs(np.stack([m for pair in maps for m in pair])), 99)) or 1.0
    for row, (c, (real_map, syn_map)) in enumerate(zip(categories, maps)):
        for col, image in enumerate(orthogonal_slices(real_map) + orthogonal_slices(syn_map)):
            ax = axes[row, col]
            ax.imshow(image, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("held-out real" if col < views else "synthetic", fontsize=8)
        axes[row, 0].set_ylabel(str(data.class_names[c]), fontsize=8)
    fig.suptitle(f"Category mean maps (z), colour range ±{vmax:.2f}", fontsize=9)
    save_figure(fig, path)


def plot_ssim_distributions(results: dict, path) -> None:
    """Left: mean-map SSIM of the model beside its ceiling and baselines. Right: per-sample SSIM."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = ["synthetic (model)", "ceiling: real train vs held-out"] + [k.replace("_", " ") for k in results["ssim_baselines"]]
    values = [results["ssim"], results["ssim_ceiling"]] + list(results["ssim_baselines"].values())
    colours = ["tab:blue", "tab:green"] + ["tab:gray"] * len(results["ssim_baselines"])
    left.barh(names[::-1], values[::-1], color=colours[::-1])
    left.set_xlabel("SSIM of category mean maps (z-scored, held-out runs)")
    left.set_xlim(0, 1)
    distributions = results["ssim_per_sample_distribution"]
    bins = np.linspace(-0.2, 1, 40)
    right.hist(distributions["ceiling"], bins=bins, alpha=0.6, label="real training volumes (ceiling)", color="tab:green")
    right.hist(distributions["synthetic"], bins=bins, alpha=0.6, label="synthetic volumes", color="tab:blue")
    for name, value in results["ssim_per_sample_baselines"].items():
        right.axvline(value, color="k", ls=":", lw=1)
        right.text(value, right.get_ylim()[1] * 0.9, name.replace("_", " "), rotation=90, fontsize=7, va="top")
    right.set_xlabel("SSIM with the nearest held-out real volume of the same category")
    right.legend(fontsize=7)
    save_figure(fig, path)


def plot_decoding_accuracy(results: dict, path) -> None:
    """Held-out accuracy of every decoder with chance and the 95th percentile of its permutation null."""
    names = list(results)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    accuracy = [results[n]["accuracy"] for n in names]
    spread = [np.std(results[n]["fold_scores"]) for n in names]
    ax.barh(names, accuracy, xerr=spread, color=["tab:orange" if n.startswith("diffusion") else "tab:blue" for n in names])
    for i, n in enumerate(names):
        null = results[n].get("null_accuracies") or []
        if null:
            ax.plot([np.percentile(null, 95)] * 2, [i - 0.4, i + 0.4], color="k", lw=1.5)
        ax.text(accuracy[i] + 0.01, i, f"{accuracy[i]:.2f} (p={results[n]['p_value']:.3f})", va="center", fontsize=7)
    ax.axvline(results[names[0]]["chance"], color="red", ls="--", lw=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy on the held-out runs (bars: spread over runs; black tick: 95th pct of the permutation null)")
    ax.legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def plot_confusion_matrices(results: dict, class_names, path) -> None:
    names = list(results)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.4 * rows), squeeze=False)
    labels = [str(c)[:5] for c in class_names[: len(results[names[0]]["confusion_matrix"])]]
    for ax, name in zip(axes.flat, names):
        matrix = np.array(results[name]["confusion_matrix"], float)
        matrix = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"{name}\n(rows: true, columns: predicted)", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    save_figure(fig, path)


def plot_roc_curves(results: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for name, entry in results.items():
        style = dict(lw=2.5, color="tab:orange") if name == "diffusion" else dict(lw=1)
        ax.plot(entry["roc"]["fpr"], entry["roc"]["tpr"], label=f"{name} ({entry['auroc']:.2f})", **style)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("All anomaly types at their default strength", fontsize=9)
    ax.legend(fontsize=6)
    save_figure(fig, path)


def plot_auroc_vs_strength(results: dict, path) -> None:
    kinds = list(next(iter(results.values()))["by_strength"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(3 * len(kinds), 3), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for name, entry in results.items():
            by = entry["by_strength"].get(kind, {})
            xs = [float(s) for s in by]
            style = dict(lw=2.5, color="tab:orange") if name == "diffusion" else dict(lw=1, alpha=0.7)
            ax.plot(xs, [by[s]["auroc"] for s in by], marker="o", ms=3, label=name, **style)
        ax.set_title(kind, fontsize=9)
        ax.set_xlabel("strength")
        ax.set_ylim(0.3, 1.02)
        ax.axhline(0.5, color="k", ls=":", lw=1)
    axes[0, 0].set_ylabel("clip AUROC")
    axes[0, -1].legend(fontsize=5)
    save_figure(fig, path)


def plot_anomaly_examples(injected: dict, mask, score_maps, default_strengths: dict, path) -> None:
    """Per type: the injected frame, its ground-truth mask, and the diffusion detector's score map."""
    kinds = [k for k in default_strengths if (injected["types"] == k).any()]
    columns = 3 if score_maps is not None else 2
    fig, axes = plt.subplots(len(kinds), columns, figsize=(2.6 * columns, 1.9 * len(kinds)), squeeze=False)
    for row, kind in enumerate(kinds):
        index = np.flatnonzero((injected["types"] == kind) & (injected["strengths"] == default_strengths[kind]))[0]
        truth = injected["masks"][index]
        frame = int(truth.reshape(len(truth), -1).sum(1).argmax())
        images = [injected["clips"][index, frame] * mask, truth[frame].astype(float)]
        titles = ["injected volume (z)", "ground truth"]
        if score_maps is not None:
            images.append(score_maps[index, frame])
            titles.append("diffusion score map")
        for col, (image, title) in enumerate(zip(images, titles)):
            view = orthogonal_slices(image)[0]
            ax = axes[row, col]
            ax.imshow(view, cmap="gray" if col == 1 else "RdBu_r" if col == 0 else "magma", origin="lower",
                      vmin=None if col else -4, vmax=None if col else 4, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=8)
        axes[row, 0].set_ylabel(f"{kind}\n({default_strengths[kind]:g})", fontsize=8)
    save_figure(fig, path)
