"""bench/paired.py: per-seed differences signed so that positive is favourable, and the verdicts, on
the committed fidelity.json of the development-split ablation."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from paired import compare, favourable_difference, fidelities  # noqa: E402

ABLATION = REPO / "bench" / "results" / "ablation_dev_cpu"


@pytest.mark.parametrize("better,base,variant,real,expected", [
    ("higher", 0.3, 0.5, 1.0, 0.2), ("lower", 0.3, 0.5, 0.0, -0.2),
    ("closer", 0.1, 0.3, 0.4, 0.2), ("closer", 0.5, 0.2, 0.4, -0.1)])
def test_differences_are_positive_when_favourable(better, base, variant, real, expected):
    assert favourable_difference(better, base, variant, real) == pytest.approx(expected)


def test_the_committed_v_comparison_reads_as_section_14_reports_it():
    rows = compare(fidelities(ABLATION / "bf16_training"), fidelities(ABLATION / "v_prediction"))
    assert rows["TSTR accuracy"]["seeds"] == [0, 1, 2]
    assert rows["TSTR accuracy"]["verdict"] == "better" and rows["TSTR accuracy"]["mean"] == pytest.approx(0.0370, abs=1e-4)
    assert rows["category-specificity gap"]["verdict"] == "better"
    assert rows["connectivity similarity"]["verdict"] == "within spread"
    assert not any(r["verdict"] == "worse" for r in rows.values())
    # beyond the sd with 3 seeds is t > sqrt(3): p between 0.05 and 0.23 for a "better" verdict here
    assert rows["TSTR accuracy"]["p_paired_t"] < 0.23


def test_an_arm_compared_with_itself_is_within_spread_everywhere():
    arm = fidelities(ABLATION / "v_prediction")
    assert all(r["mean"] == 0 and r["verdict"] == "within spread" for r in compare(arm, arm).values())
