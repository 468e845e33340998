"""bfloat16 against float32 inference on a trained model: speed, and whether any result moves more
than a change of seed moves it.

    python bench/precision.py --results results --seeds 0 1 --threads 2 --out bench/results/precision_cpu

Uses a finished default run's ``--results`` (its checkpoint, prepared data and injected anomalies;
nothing is trained). For every (precision, seed) it runs, with the stage functions of the
workflow, the three model-bound steps: the sampler (``sample_subject``, then ``evaluate_subject`` on
its output), the diffusion classifier (held-out blocks) and the diffusion detector
(``score_subject``). The seed is the sampler's, the classifier's (its (timestep, noise) pairs) and the
detector's (calibration clips and noise draws). So each result is read against the spread that a
change of seed alone gives at float32. Writes ``precision.json`` and ``precision.md`` to ``--out``.
Scored on the test runs: a measurement, it chooses nothing about the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]
from modalmerge.analysis.diffusion_decoding import diffusion_classifier_decoding  # noqa: E402
from modalmerge.config import validate_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.diffusion.checkpoints import load_diffusion  # noqa: E402
from modalmerge.runtime import model_autocast  # noqa: E402
from modalmerge.stages.anomalies import score_subject  # noqa: E402
from modalmerge.stages.evaluate import evaluate_subject  # noqa: E402
from modalmerge.stages.report_summary import REALISM_MEASURES  # noqa: E402
from modalmerge.stages.sample import sample_subject  # noqa: E402

SAMPLE_OUTPUTS = {"nifti": "synthetic.nii.gz", "npz": "synthetic.npz", "snapshots": "snapshots.npz",
                  "attention_nifti": "attention.nii.gz", "attention_temporal": "attention_temporal.npz",
                  "summary": "sampling_summary.json"}
SCORE_OUTPUTS = {"json": "auc.json", "table": "auroc.tsv", "roc": "roc.npz", "figure_roc": "roc.png",
                 "figure_strength": "strength.png", "figure_examples": "examples.png"}


def one(results: Path, config: dict, precision: str, seed: int, folder: Path, subject: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    prep, model = results / "prep" / subject / "volumes.npz", results / "model" / subject / "model.pt"
    out = {}
    sample_config = {**config["sample"], "seed": seed}
    paths = {key: folder / name for key, name in SAMPLE_OUTPUTS.items()}
    summary = sample_subject(model, prep, sample_config, paths, "cpu", config["threads"], precision)
    out["sampling_time_s"] = summary["sampling_time_s"]
    fidelity_paths = {"json": folder / "fidelity.json", "tsv": folder / "fidelity.tsv",
                      "figure_slices": folder / "slices.png", "figure_ssim": folder / "ssim.png"}
    evaluate_subject(prep, paths["npz"], fidelity_paths, seed=config["evaluate"]["seed"])
    fidelity = json.loads(fidelity_paths["json"].read_text())
    out["fidelity"] = {measure: model_of(fidelity) for measure, (model_of, _, _, _) in REALISM_MEASURES.items()}

    diffusion, meta = load_diffusion(model, "cpu")
    data = PreparedData.load(prep)
    started = time.perf_counter()
    with model_autocast(torch.device("cpu"), precision):
        decoded = diffusion_classifier_decoding(
            diffusion, data.X, data.label_ids, data.runs, data.test_runs, data.train_runs, data.rest_id,
            meta["config"]["model"]["clip_length"], config["decode"]["diffusion_pairs"], 100, seed)
    out["classifier_time_s"] = time.perf_counter() - started
    out["classifier_accuracy"] = decoded["accuracy"]
    out["classifier_confusion"] = decoded["confusion_matrix"]

    anomalies = {**config["anomalies"], "seed": seed}
    started = time.perf_counter()
    auc = score_subject(results / "anomalies" / subject / "injected.npz", prep, model, anomalies,
                        {key: folder / name for key, name in SCORE_OUTPUTS.items()}, "cpu", config["threads"], precision)
    entry = json.loads((folder / "auc.json").read_text())["detectors"]["diffusion"]
    out["detector_time_s"] = entry["runtime_s"]
    out["score_stage_s"] = time.perf_counter() - started
    out["detector_auroc"] = auc["diffusion"]
    out["detector_auroc_by_type"] = {kind: value["auroc"] for kind, value in entry.get("by_type", {}).items()}
    out["detector_blob_voxel_auprc"] = entry.get("by_type", {}).get("blob", {}).get("voxel_auprc")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results")
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subject", default="sub001")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "precision_cpu")
    args = parser.parse_args()
    config = validate_config(yaml.safe_load(args.configfile.read_text()))
    config["threads"] = args.threads
    runs = {}
    for seed in args.seeds:  # precisions alternate inside each seed: drift of the machine hits both
        for precision in args.precisions:
            name = f"{precision}-seed{seed}"
            runs[name] = one(args.results, config, precision, seed, args.out / "runs" / name, args.subject)
            print(name, json.dumps({k: v for k, v in runs[name].items() if k != "classifier_confusion"}), flush=True)
    report = {"machine": {"cpu_bf16": bool(torch.cpu._is_avx512_bf16_supported()), "threads": args.threads,
                          "torch": torch.__version__}, "runs": runs}
    (args.out / "precision.json").write_text(json.dumps(report, indent=2))
    (args.out / "precision.md").write_text(markdown(runs))
    print(markdown(runs))


def markdown(runs: dict) -> str:
    names = list(runs)
    rows = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def row(label, values, fmt="{:.3f}"):
        rows.append(f"| {label} | " + " | ".join(fmt.format(v) if v is not None else "" for v in values) + " |")

    for key in ("sampling_time_s", "classifier_time_s", "detector_time_s"):
        row(key, [runs[n][key] for n in names], "{:.1f}")
    row("classifier accuracy", [runs[n]["classifier_accuracy"] for n in names])
    row("detector AUROC (pooled)", [runs[n]["detector_auroc"] for n in names])
    row("detector blob voxel AUPRC", [runs[n]["detector_blob_voxel_auprc"] for n in names])
    for kind in runs[names[0]]["detector_auroc_by_type"]:
        row(f"detector AUROC {kind}", [runs[n]["detector_auroc_by_type"].get(kind) for n in names])
    for measure in runs[names[0]]["fidelity"]:
        row(measure, [runs[n]["fidelity"][measure] for n in names])
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
