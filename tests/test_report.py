"""The HTML report: built from a tiny end-to-end run, every image embedded, every section present or
marked as not run, and it opens in headless Chromium without console errors."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import pytest
from PIL import Image

from modalmerge.stages.report import SECTIONS

from conftest import REPO

pytestmark = pytest.mark.slow


def test_report_embeds_every_image_and_has_every_section(workflow_dir):
    page = (workflow_dir / "results/report/index.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    # data 2, training 1, diffusion process 1, real vs synthetic 1, fidelity 1, decoding 2, learning
    # curve 1, anomalies 3, attention 2, temporal attention by lag 1, classifier evidence 1: every
    # figure the report draws, none replaced by a "not available" note
    assert len(sources) == 16
    assert "Figure not available" not in page
    for source in sources:
        assert source.startswith("data:image/png;base64,"), source[:40]
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert "http://" not in page and "https://" not in page  # nothing to fetch: readable offline
    assert "Not run" not in page
    # the diffusion classifier says how it decided: the default compares candidates by the whitened residual,
    # fitted on the training runs' blocks (the tiny config's 2 pairs, one forward per block and pair)
    classifier = read(workflow_dir, "decode", "sub001", "decoding.json")["decoders"]["diffusion_classifier"]
    assert classifier["metric"] == "whitened"
    import yaml
    from modalmerge.config import validate_config
    used = validate_config(yaml.safe_load((workflow_dir / "config.yaml").read_text()))["decode"]["diffusion_t_range"]
    assert classifier["t_range"] == used
    assert classifier["metric_fit"]["forwards"] == classifier["metric_fit"]["training_blocks"] * 2 > 0
    assert "residual&#x27;s Mahalanobis norm" in page or "residual's Mahalanobis norm" in page
    # and how it compares with the block-level classical decoders, block by block
    decoders = read(workflow_dir, "decode", "sub001", "decoding.json")["decoders"]
    for name in ("linear_svm_block_averaged", "shrinkage_lda_block_averaged"):
        test = classifier["paired_tests"][name]
        assert test["accuracy_difference"] == pytest.approx(classifier["accuracy"] - decoders[name]["accuracy"])
        assert test["n_units"] == len(classifier["held_out_truth"]) > 0
    assert "McNemar" in page


def read(workflow_dir, *parts) -> dict:
    import json
    return json.loads((workflow_dir / "results").joinpath(*parts).read_text())


def test_summary_json_holds_the_numbers_of_the_stage_outputs(workflow_dir):
    summary = read(workflow_dir, "report", "summary.json")
    fidelity = read(workflow_dir, "eval", "sub001", "fidelity.json")
    decoders = read(workflow_dir, "decode", "sub001", "decoding.json")["decoders"]
    detectors = read(workflow_dir, "anomalies", "sub001", "auc.json")["detectors"]
    assert summary["claims"] == {"ssim": 0.82, "decoding_accuracy": 0.78, "anomaly_auroc": 0.89}
    assert summary["ssim"]["model_zscored_mean_maps"] == fidelity["ssim"]
    assert summary["ssim"]["ceiling"] == fidelity["ssim_ceiling"]
    assert summary["ssim"]["category_specificity_gap"] == fidelity["category_specificity_gap"]
    classical = {k: v["accuracy"] for k, v in decoders.items() if not k.startswith("diffusion")}
    diffusion = {k: v["accuracy"] for k, v in decoders.items() if k.startswith("diffusion")}
    assert summary["decoding"]["best_classical_accuracy"] == max(classical.values())
    assert summary["decoding"]["best_classical"] == max(classical, key=classical.get)
    assert summary["decoding"]["best_diffusion_accuracy"] == max(diffusion.values())
    baselines = {k: v["auroc"] for k, v in detectors.items() if k != "diffusion"}
    assert summary["anomalies"]["best_baseline_auroc"] == max(baselines.values())
    assert summary["anomalies"]["diffusion_auroc"] == detectors["diffusion"]["auroc"]
    assert summary["anomalies"]["untrained_diffusion_auroc"] == detectors["untrained_diffusion"]["auroc"]
    assert detectors["diffusion"]["auroc_minus_untrained"] == pytest.approx(
        detectors["diffusion"]["auroc"] - detectors["untrained_diffusion"]["auroc"])
    assert summary["provenance"]["runtimes"]["train_diffusion"]["seconds"] > 0
    realism = summary["realism_vs_classical_generator"]
    generator = fidelity["generator_baselines"]["gaussian_var1"]
    assert realism["measures"]["connectivity similarity"]["gaussian_var1"] == generator["connectivity_similarity"]
    assert realism["measures"]["connectivity similarity"]["model"] == fidelity["connectivity_similarity"]
    wins = sum((e["model"] > e["gaussian_var1"]) if e["better"] == "higher" else (e["model"] < e["gaussian_var1"])
               if e["better"] == "lower" else abs(e["model"] - e["real_or_ceiling"]) < abs(e["gaussian_var1"] - e["real_or_ceiling"])
               for e in realism["measures"].values())
    assert realism["model_better"]["gaussian_var1"] == wins and realism["of"] == len(realism["measures"]) == 14
    # real runs of the synthetic set's size beside them: a reference, never counted as a competitor
    groups = fidelity["real_runs_reference"]["per_group"]
    assert len(groups) == 3
    same_size = realism["measures"]["connectivity similarity"]["real_runs_same_size"]
    assert same_size["values"] == [g["connectivity_similarity"] for g in groups]
    assert same_size["min"] <= same_size["mean"] <= same_size["max"]
    assert "real_runs_same_size" not in realism["model_better"]
    # the set-level measures again with the synthetic runs preprocessed like real runs, beside the same real groups
    preprocessed, found = realism["preprocessed_like_real"], fidelity["preprocessed_like_real"]
    rbf = preprocessed["measures"]["C2ST accuracy, RBF (0.5 ideal)"]
    assert rbf["model"] == found["synthetic"]["c2st_rbf_accuracy"] != fidelity["c2st_rbf_accuracy"]
    assert rbf["gaussian_var1"] == found["generator_baselines"]["gaussian_var1"]["c2st_rbf_accuracy"]
    assert rbf["real_runs_same_size"]["values"] == [g["c2st_rbf_accuracy"] for g in groups]
    assert preprocessed["of"] == len(preprocessed["measures"]) == 7


def test_the_html_headline_shows_the_numbers_of_the_stage_outputs(workflow_dir):
    page = (workflow_dir / "results/report/index.html").read_text()
    headline = page[page.index('id="headline"'):page.index('id="data"')]
    summary = read(workflow_dir, "report", "summary.json")
    fidelity = read(workflow_dir, "eval", "sub001", "fidelity.json")
    assert f"{fidelity['ssim']:.3f} z-scored category-mean maps" in headline
    assert f"{summary['decoding']['best_classical']} {summary['decoding']['best_classical_accuracy']:.3f}" in headline
    assert f"{summary['anomalies']['best_baseline']} {summary['anomalies']['best_baseline_auroc']:.3f}" in headline
    realism = summary["realism_vs_classical_generator"]
    assert f"model better on {realism['model_better']['gaussian_var1']} of 14 measures" in headline
    assert "Against the classical generator" in page
    assert "real runs, same size: mean [min, max]" in page and "groups of 3 (1-2-3, 4-5-6, 7-8-9)" in page
    assert "Synthetic runs preprocessed like the real runs" in page
    assert "share in the 10 strongest" in page  # where each set keeps its residual variance
    assert f"{fidelity['residual_spectrum']['heldout_real']['leading_10_share']:.3f}" in page
    assert "attention vs selectivity (Spearman)" in page  # the interpretability numbers, whatever they say
    assert "classifier evidence vs selectivity (Spearman)" in page
    assert f"the same detector on the untrained model: {summary['anomalies']['untrained_diffusion_auroc']:.3f}" in headline
    assert "What training adds." in page and f"untrained_diffusion {summary['anomalies']['untrained_diffusion_auroc']:.3f}" in page


def test_the_readme_table_script_reports_the_stage_outputs(workflow_dir):
    import sys
    result = subprocess.run([sys.executable, str(REPO / "bench/results_table.py"), str(workflow_dir / "results")],
                            capture_output=True, text=True, check=True)
    fidelity = read(workflow_dir, "eval", "sub001", "fidelity.json")
    decoders = read(workflow_dir, "decode", "sub001", "decoding.json")["decoders"]
    best_classical = max(v["accuracy"] for k, v in decoders.items() if not k.startswith("diffusion"))
    assert f"{fidelity['ssim']:.3f} on z-scored category-mean maps" in result.stdout
    assert f"{100 * best_classical:.1f} %" in result.stdout
    curve = read(workflow_dir, "decode", "sub001", "decoding.json")["learning_curve"]["by_size"]
    smallest = curve[min(curve, key=int)]["gain"]
    assert f"{100 * smallest['mean']:.1f} ± {100 * smallest['sd']:.1f} points" in result.stdout
    # the synthetic runs preprocessed like the real runs, beside the classical generator's
    preprocessed = fidelity["preprocessed_like_real"]
    assert f"C2ST RBF {preprocessed['synthetic']['c2st_rbf_accuracy']:.3f}" in result.stdout
    assert (f"classical generator, preprocessed: connectivity "
            f"{preprocessed['generator_baselines']['gaussian_var1']['connectivity_similarity']:.3f}") in result.stdout
    # header, separator, four claims, the generator row, the preprocessed row, the learning-curve row
    assert len(result.stdout.strip().splitlines()) == 9


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium_without_console_errors(workflow_dir, tmp_path):
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--window-size=1280,2000", f"--screenshot={shot}", (workflow_dir / "results/report/index.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    assert shot.exists(), result.stderr[-2000:]
    image = Image.open(shot)
    assert image.size == (1280, 2000)
    assert image.convert("L").getextrema()[0] < 100  # something dark (text, figures) was drawn
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


# run in the page once loaded: the title says how many images the browser could not decode
COUNT_BROKEN = ("<script>window.addEventListener('load', () => { const broken = [...document.images].filter("
                "i => !i.complete || i.naturalWidth === 0).length; document.title = 'BROKEN:' + broken; });</script>")


def broken_images_seen_by_chromium(page: str, tmp_path) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    copy = tmp_path / "page.html"
    copy.write_text(page.replace("</body>", COUNT_BROKEN + "</body>"))
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()],
        capture_output=True, text=True, timeout=120)
    return re.search(r"<title>([^<]*)</title>", result.stdout).group(1)


@pytest.mark.skipif(chromium() is None, reason="headless Chromium is not installed (.ci/run installs it)")
def test_every_image_of_the_report_decodes_in_chromium_and_a_broken_one_is_caught(workflow_dir, tmp_path):
    page = (workflow_dir / "results/report/index.html").read_text()
    assert broken_images_seen_by_chromium(page, tmp_path / "intact") == "BROKEN:0"
    first = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    damaged = page[:first] + "AAAA" + page[first + 64:]  # the control: one image's bytes destroyed
    assert broken_images_seen_by_chromium(damaged, tmp_path / "damaged") == "BROKEN:1"


def test_switched_off_stages_are_marked_not_run(workflow_dir, tmp_path):
    import yaml
    from test_workflow import run_snakemake, tiny_config
    config = tiny_config()
    config["stages"] = {"evaluate_ssim": False, "decode": False, "anomalies": False}
    # reuse the trained tiny model: copy the finished run, then switch stages off
    shutil.copytree(workflow_dir / "results", tmp_path / "results")
    shutil.copytree(workflow_dir / ".snakemake", tmp_path / ".snakemake", ignore=shutil.ignore_patterns("locks", "incomplete"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    for stage in ("eval", "decode", "anomalies", "report"):
        shutil.rmtree(tmp_path / "results" / stage, ignore_errors=True)
    run_snakemake(tmp_path, "--cores", "2", "--resources", "gpu=1")
    page = (tmp_path / "results/report/index.html").read_text()
    assert page.count("Not run") >= 3
    for section in SECTIONS:
        assert f'id="{section}"' in page
    assert not (tmp_path / "results/decode").exists()


def test_snakemakes_own_report_builds(workflow_dir):
    from test_workflow import run_snakemake
    run_snakemake(workflow_dir, "--report", str(workflow_dir / "snakemake_report.html"))
    page = (workflow_dir / "snakemake_report.html").read_text(errors="ignore")
    for category in ("Fidelity", "Decoding", "Anomalies", "Report"):
        assert category in page, category

