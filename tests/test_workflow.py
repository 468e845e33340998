"""End-to-end: the real Snakemake workflow in a temporary directory on the real embedded data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]


def tiny_config() -> dict:
    """The default configuration, shrunk so the whole chain runs in a few minutes on 2 cores."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["model"].update(clip_length=4, channels=[8, 16, 16], attention_levels=[2], temporal_heads=2,
                           temporal_head_dim=8, norm_groups=4)
    config["train"].update(steps=4, batch_size=2, log_every=2, eval_every=4, checkpoint_every=2, checkpoint_min_interval_s=0,
                           warmup_steps=1)
    config["sample"].update(steps=3, clips_per_category=1, snapshot_every=1)
    config["evaluate"].update(n_permutations=20)
    config["anomalies"]["strengths"] = {"blob": [3.0], "dropout": [1.0], "spike": [0.5, 2.0], "motion": [0.05],
                                        "noise_burst": [1.5]}
    config["anomalies"]["diffusion"].update(steps=1, n_draws=1, calibration_clips=4)
    config["decode"].update(n_permutations=5, n_permutations_slow=1, diffusion_pairs=2, diffusion_prune_after=1,
                            augmentation_fractions=[0.0, 1.0])
    return config


def run_snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        SNAKEMAKE + ["--directory", str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
        capture_output=True, text=True, timeout=1800,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def planned_rules(workdir: Path) -> set[str]:
    """Rules that ``snakemake -n`` would run (from its job-stats table)."""
    out = run_snakemake(workdir, "-n", "--quiet", "rules").stdout
    rules = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            rules.add(parts[0])
    return rules


def test_workflow_writes_the_prepared_data(workflow_dir):
    import numpy as np
    prep = workflow_dir / "results/prep/sub001"
    for name in ("sub001_desc-normalized_bold.nii.gz", "sub001_desc-brain_mask.nii.gz", "volumes.npz",
                 "volumes.tsv", "split.json"):
        assert (prep / name).exists(), name
    with np.load(prep / "volumes.npz") as npz:
        assert npz["X"].shape[0] == 12 * 121
    for name in ("model.pt", "training_log.tsv", "training_summary.json"):
        assert (workflow_dir / "results/model/sub001" / name).exists(), name
    for name in ("sub001_desc-synthetic_bold.nii.gz", "synthetic.npz", "diffusion_snapshots.npz",
                 "sub001_desc-attention_map.nii.gz", "attention_temporal.npz", "sampling_summary.json",
                 "interpretability.json"):
        assert (workflow_dir / "results/samples/sub001" / name).exists(), name
    fidelity = json.loads((workflow_dir / "results/eval/sub001/fidelity.json").read_text())
    for key in ("ssim", "ssim_ceiling", "ssim_baselines", "category_specificity_gap", "ssim_raw_intensity",
                "c2st_accuracy", "mmd", "tstr_accuracy", "trtr_accuracy", "memorisation"):
        assert key in fidelity, key
    assert fidelity["protocol"]["test_runs"] == [10, 11, 12]
    decoding = json.loads((workflow_dir / "results/decode/sub001/decoding.json").read_text())["decoders"]
    assert {"linear_svm", "logistic_regression", "linear_svm_block_averaged", "nilearn_decoder", "shrinkage_lda",
            "shrinkage_lda_block_averaged",
            "diffusion_classifier", "diffusion_encoder_features", "diffusion_augmented_svm"} <= set(decoding)
    for name, entry in decoding.items():
        for key in ("accuracy", "balanced_accuracy", "chance", "p_value", "fold_scores"):
            assert key in entry, (name, key)
    assert decoding["linear_svm"]["accuracy"] > 0.45  # real signal in the slice data, tiny model or not
    evidence = json.loads((workflow_dir / "results/decode/sub001/classifier_evidence.json").read_text())
    assert {"any_category", "category_specific"} <= set(evidence) and evidence["n_permutations"] == 1000
    with np.load(workflow_dir / "results/decode/sub001/classifier_evidence.npz") as npz:
        assert npz["maps"].shape == (8, 37, 19, 1) and np.isfinite(npz["maps"]).all()
    auc = json.loads((workflow_dir / "results/anomalies/sub001/auc.json").read_text())["detectors"]
    assert "diffusion" in auc and "zscore_smoothed" in auc
    for name, entry in auc.items():
        assert {"blob", "dropout", "spike", "motion", "noise_burst"} <= set(entry["by_type"]), name
        # every held-out clip once clean and once per type at its default strength, pooled
        assert entry["n_normal"] == 90 and entry["n_anomalous"] == 5 * 90, name  # 3 runs x 30 clips of 4 volumes
        assert all(by["n_anomalous"] == 90 for by in entry["by_type"].values()), name
    # real detectors on real data see the anomalies they are built for (measured 0.73 and 0.97 here)
    assert max(entry["auroc"] for name, entry in auc.items() if name != "diffusion") > 0.65
    assert auc["variance_deficit"]["by_type"]["dropout"]["auroc"] > 0.9
    assert set(auc["diffusion"]["by_strength"]["spike"]) == {"0.5", "2"}
    assert auc["zscore_global_mean"]["by_strength"]["spike"]["2"]["auroc"] > 0.9  # a 2-std global jump is obvious
    for rule in ("fetch_haxby", "mask_and_normalize", "train_diffusion", "sample", "evaluate_ssim", "decode_classical", "decode",
                 "inject_synthetic_anomalies", "score_auc"):
        assert (workflow_dir / f"results/logs/{rule}/sub001.log").exists()
        assert (workflow_dir / f"results/benchmarks/{rule}/sub001.tsv").exists()


def test_nothing_to_do_after_a_complete_run(workflow_dir):
    assert planned_rules(workflow_dir) == set()


def test_changing_a_prep_parameter_reruns_only_that_stage_and_its_dependants(workflow_dir, tmp_path):
    changed = yaml.safe_load((workflow_dir / "config.yaml").read_text())
    changed["prep"]["detrend"] = False
    (workflow_dir / "config.yaml").write_text(yaml.safe_dump(changed))
    try:
        planned = planned_rules(workflow_dir)
    finally:
        (workflow_dir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    assert {"mask_and_normalize", "train_diffusion", "sample"} <= planned
    assert "fetch_haxby" not in planned


def test_changing_a_sampling_parameter_reruns_sampling_only(workflow_dir):
    changed = yaml.safe_load((workflow_dir / "config.yaml").read_text())
    changed["sample"]["guidance_scale"] = 2.0
    (workflow_dir / "config.yaml").write_text(yaml.safe_dump(changed))
    try:
        planned = planned_rules(workflow_dir)
    finally:
        (workflow_dir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    assert "sample" in planned
    assert not {"fetch_haxby", "mask_and_normalize", "train_diffusion"} & planned


def test_train_rule_declares_one_gpu(workflow_dir):
    out = run_snakemake(workflow_dir, "-n", "--forcerun", "train_diffusion").stdout
    block = out[out.index("rule train_diffusion"):]
    assert "gpu=1" in block[:1500]


def test_a_config_typo_fails_at_start_naming_the_key(tmp_path):
    config = tiny_config()
    config["prep"]["detrnd"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "-n", check=False)
    assert result.returncode != 0
    assert "detrnd" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_the_report_is_announced_only_when_this_run_built_it(workflow_dir, tmp_path):
    import shutil
    shutil.copytree(workflow_dir / "results" / "data", tmp_path / "results" / "data", copy_function=shutil.copy2)
    shutil.copy(workflow_dir / "config.yaml", tmp_path / "config.yaml")
    out = run_snakemake(tmp_path, "--cores", "1", "results/prep/sub001/volumes.npz")
    text = out.stdout + out.stderr
    assert "ModalMerge finished: the requested targets are built" in text and "Open the report" not in text
    assert "Open the report: results/report/index.html" in run_snakemake(workflow_dir, "--cores", "1", "--forcerun",
                                                                          "report_index").stdout


def test_outputs_get_the_permissions_the_umask_gives(workflow_dir):
    """Files 666 and folders 777 less the umask (644 / 755 under the usual 022), the report included."""
    import os
    import stat
    umask = os.umask(0o022)
    os.umask(umask)
    for path in ("results/report/index.html", "results/report/summary.json", "results/anomalies/sub001/auc.json",
                 "results/data/sub001", "results/prep/sub001/volumes.npz", "results/model/sub001/model.pt"):
        full = workflow_dir / path
        expected = (0o777 if full.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(full.stat().st_mode) == expected, f"{path} has mode {oct(full.stat().st_mode)}"
