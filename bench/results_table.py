"""The README's results table, regenerated from a run's JSON outputs (so no number is typed by hand).

    python bench/results_table.py results/            # prints the markdown table for sub001
    python bench/results_table.py results/ --subject sub002

Every number comes from ``eval/{subject}/fidelity.json``, ``decode/{subject}/decoding.json`` and
``anomalies/{subject}/auc.json``; "strongest" baselines are the maxima over what those files hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modalmerge.stages.report_summary import realism_against_generators  # noqa: E402

HEADER = ("| claim to beat | ModalMerge (honest protocol) | ceiling / reference | strongest baseline |\n"
          "|---|---|---|---|")


def best(entries: dict, key: str, exclude=lambda name: False) -> tuple[str, float]:
    """The name and value of the entry with the largest ``key``."""
    name = max((n for n in entries if not exclude(n)), key=lambda n: entries[n][key])
    return name, entries[name][key]


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def rows(fidelity: dict, decoding: dict, auc: dict) -> list[str]:
    f = fidelity
    trivial, trivial_value = max(f["ssim_baselines"].items(), key=lambda kv: kv[1])
    decoders = decoding["decoders"]
    classical, classical_acc = best(decoders, "accuracy", exclude=lambda n: n.startswith("diffusion"))
    diffusion, diffusion_acc = best(decoders, "accuracy", exclude=lambda n: not n.startswith("diffusion"))
    detectors = auc["detectors"]
    baseline, baseline_auroc = best(detectors, "auroc", exclude=lambda n: n == "diffusion")
    c = decoders[classical]
    d = decoders[diffusion]
    return [
        f"| SSIM 0.82 (no baseline given) | {f['ssim']:.3f} on z-scored category-mean maps = "
        f"{100 * f['ssim_fraction_of_ceiling']:.0f} % of the real-vs-real ceiling; category-specificity gap "
        f"{f['category_specificity_gap']:.3f} | ceiling {f['ssim_ceiling']:.3f}; gap {f['category_specificity_gap_ceiling']:.3f} | "
        f"{trivial.replace('_', ' ')} {trivial_value:.3f}; grand mean {f['ssim_baselines']['training_grand_mean']:.3f} (gap 0) |",
        f"| — | raw-intensity SSIM {f['ssim_raw_intensity']:.3f} | {f['ssim_raw_intensity_ceiling']:.3f} | "
        + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in f["ssim_raw_intensity_baselines"].items())
        + ": raw SSIM is uninformative |",
        f"| 78 % 8-way decoding | {diffusion.replace('_', ' ')} {pct(diffusion_acc)} (p = {d['p_value']:.3g}) | — | "
        f"{classical.replace('_', ' ')} {pct(classical_acc)} (p = {c['p_value']:.3g}"
        + (f"; {pct(c['leave_one_run_out']['accuracy'])} leave-one-run-out" if "leave_one_run_out" in c else "")
        + f"); chance {pct(c['chance'])} |",
        f"| AUC-ROC 0.89 (anomalies unspecified) | diffusion detector {detectors['diffusion']['auroc']:.3f} "
        f"(5 types pooled at default strengths) | 1.0 | {baseline.replace('_', ' ')} {baseline_auroc:.3f} |"
        if "diffusion" in detectors else
        f"| AUC-ROC 0.89 (anomalies unspecified) | diffusion detector not run | 1.0 | {baseline.replace('_', ' ')} {baseline_auroc:.3f} |",
        *generator_rows(f),
        *preprocessed_rows(f),
        *learning_curve_rows(decoding),
    ]


def learning_curve_rows(decoding: dict) -> list[str]:
    """Synthetic runs added to the linear SVM at the smallest and the full real-data size, where evaluated."""
    curve = decoding.get("learning_curve")
    if not curve:
        return []
    sizes = sorted(curve["by_size"], key=int)
    small, full = sizes[0], sizes[-1]

    def cell(size: str, key: str) -> str:
        entry = curve["by_size"][size][key]
        return f"{100 * entry['mean']:.1f} ± {100 * entry['sd']:.1f}"

    return [
        f"| synthetic data helps when data is scarce | not in the default run (a diffusion model per run subset: `bench/learning_curve.py`) | "
        f"SVM on real runs only: {cell(small, 'real')} % with {small} run(s), {cell(full, 'real')} % with all {full} | "
        f"classical generator's runs added: {cell(small, 'gain')} points with {small} run(s), {cell(full, 'gain')} with "
        f"{full} (mean ± sd over run subsets) |",
    ]


def generator_rows(f: dict) -> list[str]:
    """The model against the classical generator (category means + voxelwise AR(1)), where evaluated."""
    if "generator_baselines" not in f:
        return []
    g = f["generator_baselines"]["gaussian_var1"]
    lag = lambda values: "/".join(f"{values[f'lag{k}']:.2f}" for k in (1, 2, 3))
    real_lags = f["temporal_autocorrelation"]["heldout_real"]
    return [
        f"| realistic synthetic fMRI | connectivity {f['connectivity_similarity']:.3f}; autocorrelation lags 1/2/3 "
        f"{lag(f['temporal_autocorrelation']['synthetic'])}; std {f['global_std']['synthetic']:.2f}; C2ST linear "
        f"{f['c2st_accuracy']:.3f}, RBF {f['c2st_rbf_accuracy']:.3f}; MMD² {f['mmd']['mmd2']:.4f}; TSTR {f['tstr_accuracy']:.3f} | "
        f"real: connectivity {f['connectivity_similarity_ceiling']:.3f}; lags {lag(real_lags)}; std "
        f"{f['global_std']['heldout_real']:.2f}; C2ST RBF real-vs-real {f['c2st_rbf_accuracy_ceiling']:.3f}; TRTR {f['trtr_accuracy']:.3f}"
        f"{same_size(f)} | "
        f"classical generator (means + voxelwise AR(1)): connectivity {g['connectivity_similarity']:.3f}; lags "
        f"{lag(g['temporal_autocorrelation'])}; std {g['global_std']:.2f}; C2ST linear {g['c2st_accuracy']:.3f}, RBF "
        f"{g['c2st_rbf_accuracy']:.3f}; MMD² {g['mmd']['mmd2']:.4f}; TSTR {g['tstr_accuracy']:.3f} |",
    ]


def preprocessed_rows(f: dict) -> list[str]:
    """The set-level numbers with every synthetic run detrended and standardised like a real run
    (``preprocessed_like_real``), where evaluated; the same-size real groups are real runs already."""
    found = f.get("preprocessed_like_real")
    if not found:
        return []
    m, g = found["synthetic"], found["generator_baselines"]["gaussian_var1"]
    numbers = lambda e: (f"connectivity {e['connectivity_similarity']:.3f}; C2ST RBF {e['c2st_rbf_accuracy']:.3f}; "
                         f"MMD² {e['mmd']['mmd2']:.4f}; TSTR {e['tstr_accuracy']:.3f}")
    return [f"| — (every synthetic run preprocessed like the real runs, `preprocessed_like_real`) | {numbers(m)} | "
            f"real runs of the synthetic set's size, as above (already preprocessed) | classical generator, preprocessed: {numbers(g)} |"]


def same_size(f: dict) -> str:
    """Real training runs of the synthetic set's size, scored like a generator: mean [min, max] over groups
    (the report's own summary of them, :func:`realism_against_generators`)."""
    reference = f.get("real_runs_reference", {})
    if not reference.get("per_group"):
        return ""
    measures = realism_against_generators(f)["measures"]
    def cell(measure, digits=3):
        e = measures[measure]["real_runs_same_size"]
        return f"{e['mean']:.{digits}f} [{e['min']:.{digits}f}, {e['max']:.{digits}f}]"
    return (f"; real runs of the synthetic set's size ({len(reference['per_group'])} groups of {reference['runs_per_group']}): "
            f"connectivity {cell('connectivity similarity')}, C2ST RBF {cell('C2ST accuracy, RBF (0.5 ideal)')}, "
            f"MMD² {cell('MMD²', 4)}, TSTR {cell('TSTR accuracy')}")


def table(results: Path, subject: str = "sub001") -> str:
    """The table for one subject's outputs under ``results`` (``eval/``, ``decode/``, ``anomalies/``)."""
    read = lambda *parts: json.loads((results.joinpath(*parts)).read_text())
    return "\n".join([HEADER, *rows(read("eval", subject, "fidelity.json"), read("decode", subject, "decoding.json"),
                                    read("anomalies", subject, "auc.json"))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="the workflow's results/ folder (or bench/results/default_run)")
    parser.add_argument("--subject", default="sub001")
    args = parser.parse_args()
    print(table(args.results, args.subject))


if __name__ == "__main__":
    main()
