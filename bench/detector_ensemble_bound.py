"""How far can one detector get on the detection issue's per-type target? An optimistic classical bound.

    python bench/detector_ensemble_bound.py RESULTS --out bench/results/detector_ensemble_bound_test.json

RESULTS is a workflow's ``results/`` folder (``prep/sub001/volumes.npz``, ``anomalies/sub001/injected.npz``
and ``auc.json``). The issue asks the diffusion detector to be at least as good as the best classical
detector of each type on at least 4 of the 5 types. Each of those "best of type" detectors is a
specialist. The global-mean z-score looks for spikes, the variance deficit for dropout, the
ridge-whitened z for focal blobs. One score has to match all of them at once.

The bound: the specialists that win a type in ``auc.json`` (chosen by looking at the test runs' own
per-type results, so this is an oracle's choice, not a method), combined into one detector. Each
specialist's clip score is standardised by its mean and sd on the clean training-run clips it was
fitted on. The combination is the largest standardised score (``max``) or the mean of the specialists'
rank-normalised scores (``rank mean``). It is scored exactly like the workflow's detectors, by
``evaluate_detector``. If even this oracle ensemble of the winners does not reach the best of each type
on 4 of 5 types, the target asks one detector for what only separate specialists deliver here. A
diffusion detector would have to beat a combination that already knows which specialists to combine.
Nothing is chosen for the workflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]
from modalmerge.analysis.anomaly_metrics import evaluate_detector  # noqa: E402
from modalmerge.analysis.detectors import classical_detectors  # noqa: E402
from modalmerge.config import load_config  # noqa: E402
from modalmerge.data.dataset import PreparedData  # noqa: E402
from modalmerge.stages.anomalies import detector_inputs  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--configfile", type=Path, default=REPO / "config.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = load_config(args.configfile)["anomalies"]
    data = PreparedData.load(args.results / "prep/sub001/volumes.npz")
    with np.load(args.results / "anomalies/sub001/injected.npz") as npz:
        injected = {k: npz[k] for k in npz.files}
    stored = json.loads((args.results / "anomalies/sub001/auc.json").read_text())["detectors"]
    classical = {k: v for k, v in stored.items() if "diffusion" not in k}
    types = list(config["default_strengths"])
    winners = {kind: max(classical, key=lambda n: classical[n]["by_type"][kind]["auroc"]) for kind in types}
    specialists = sorted(set(winners.values()))

    train_clips, _, _ = detector_inputs(injected, data)
    detectors = classical_detectors(data.mask, config["seed"], config["ridge_whitened_lambda"])
    standardised, ranks, maps_of = [], [], {}
    for name in specialists:
        detector = detectors[name].fit(train_clips)
        maps = detector.score_maps(injected["clips"])
        scores = detector.decision_function(injected["clips"], maps=maps)
        reference = detector.decision_function(train_clips)
        if not np.isclose(evaluate_detector(scores, maps, injected, data.mask, config["default_strengths"],
                                            config["voxel_fp_rate"])["auroc"], classical[name]["auroc"]):
            raise SystemExit(f"{name}: refitted AUROC differs from auc.json; is RESULTS from this code and config?")
        standardised.append((scores - reference.mean()) / max(reference.std(), 1e-12))
        ranks.append(rankdata(scores) / len(scores))
        maps_of[name] = maps
    combined = {"max": np.max(standardised, axis=0), "rank mean": np.mean(ranks, axis=0)}
    blob_maps = maps_of[winners["blob"]] if "blob" in winners else None
    rows = {}
    for combination, scores in combined.items():
        entry = evaluate_detector(scores, blob_maps, injected, data.mask, config["default_strengths"], config["voxel_fp_rate"])
        per_type = {kind: entry["by_type"][kind]["auroc"] for kind in types}
        rows[combination] = {"pooled": entry["auroc"], "by_type": per_type,
                             "types_at_least_best": sum(per_type[k] >= classical[winners[k]]["by_type"][k]["auroc"] for k in types)}
    best_pooled = max(classical, key=lambda n: classical[n]["auroc"])
    summary = {"winners": {k: {"detector": n, "auroc": classical[n]["by_type"][k]["auroc"]} for k, n in winners.items()},
               "best_pooled": {"detector": best_pooled, "auroc": classical[best_pooled]["auroc"]},
               "ensembles": rows, "note": __doc__.split("\n\n")[3].replace("\n", " ")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    best_of = {k: classical[winners[k]]["by_type"][k]["auroc"] for k in types}
    line = lambda label, pooled, per_type: (f"| {label} | {pooled} | " + " | ".join(f"{per_type[k]:.3f}" for k in types)
                                            + f" | {sum(per_type[k] >= best_of[k] for k in types)} |")
    print(f"| detector | pooled | {' | '.join(types)} | types >= best of type |")
    print("|---|---|" + "---|" * len(types) + "---|")
    print("| best of each type | | " + " | ".join(f"{best_of[k]:.3f} ({winners[k]})" for k in types) + " | |")
    for name in (best_pooled, "diffusion", "untrained_diffusion"):
        if name in stored:
            e = stored[name]
            print(line(name, f"{e['auroc']:.3f}", {k: e["by_type"][k]["auroc"] for k in types}))
    for combination, row in rows.items():
        print(line(f"oracle ensemble of the winners, {combination}", f"{row['pooled']:.3f}", row["by_type"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
