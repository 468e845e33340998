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

pytestmark = pytest.mark.slow


def test_report_embeds_every_image_and_has_every_section(workflow_dir):
    page = (workflow_dir / "results/report/index.html").read_text()
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) >= 12
    for source in sources:
        assert source.startswith("data:image/png;base64,"), source[:40]
        Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))).verify()
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    assert "http://" not in page and "https://" not in page  # nothing to fetch: readable offline
    assert "Not run" not in page


def test_summary_json_holds_the_headline(workflow_dir):
    import json
    summary = json.loads((workflow_dir / "results/report/summary.json").read_text())
    assert summary["claims"] == {"ssim": 0.82, "decoding_accuracy": 0.78, "anomaly_auroc": 0.89}
    for key in ("ssim", "decoding", "anomalies", "provenance"):
        assert key in summary
    assert summary["provenance"]["runtimes"]["train_diffusion"]["seconds"] > 0


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
