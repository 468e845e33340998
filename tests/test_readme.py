"""The README's results table is generated from stored stage outputs, not typed."""

from __future__ import annotations

import subprocess

from conftest import REPO


def test_the_readme_results_table_is_the_one_the_stored_default_run_gives():
    """The README's table is bench/results_table.py run on bench/results/default_run_draws4: no number typed by hand."""
    import sys
    result = subprocess.run([sys.executable, str(REPO / "bench/results_table.py"), str(REPO / "bench/results/default_run_draws4")],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() in (REPO / "README.md").read_text()
