"""The package's layers: imports point down only (base -> data -> model -> diffusion -> training /
analysis -> stages), no module imports snakemake, and no module outgrows a reader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "modalmerge"
# rank of each layer; a module may import its own layer or lower ones (training and analysis are
# siblings: neither may import the other)
LAYERS = {"base": 0, "data": 1, "model": 2, "diffusion": 3, "training": 4, "analysis": 4, "stages": 5}
BASE_MODULES = {"__init__", "errors", "atomic", "config", "runtime"}
MAX_LINES = 300


def layer_of(module: str) -> str:
    """``modalmerge.data.clips`` -> ``data``; top-level modules (and names of the package such as
    ``modalmerge.REST_LABEL``) are ``base``."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE_MODULES or not (PACKAGE / parts[1]).is_dir():
        return "base"
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO).with_suffix("")
    return ".".join(relative.parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Absolute names of the modules the code of ``module`` imports (relative imports resolved)."""
    package = module.split(".")
    if not is_package:
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            names.add(stem)
            if not node.module:  # from . import x, y
                names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_known_layer():
    for path in SOURCES:
        assert layer_of(module_name(path)) in LAYERS, f"{path} is in no layer of {sorted(LAYERS)}"


def layering_violations(source: str, module: str, is_package: bool = False) -> list[str]:
    own = layer_of(module)
    found = []
    for name in sorted(imported_modules(source, module, is_package)):
        if name.split(".")[0] == "snakemake":
            found.append(f"{module} imports snakemake: only workflow scripts may")
        elif name.startswith("modalmerge"):
            other = layer_of(name)
            if not (LAYERS[other] < LAYERS[own] or other == own):
                found.append(f"{module} ({own}) imports {name} ({other}): arrows must point down")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_only(path):
    assert layering_violations(path.read_text(), module_name(path), path.name == "__init__.py") == []


@pytest.mark.parametrize("source", [
    "from ..training.trainer import Trainer",          # analysis -> training (siblings)
    "from ..stages.sample import sample_subject",      # analysis -> stages (up)
    "import modalmerge.stages.decode",
    "from snakemake.utils import validate",
])
def test_the_checker_catches_upward_imports(source):
    assert layering_violations(source, "modalmerge.analysis.fake")


def test_the_checker_allows_downward_and_base_imports():
    source = "from ..data.clips import make_clips\nfrom .. import REST_LABEL\nfrom ..errors import ModalMergeInputError\n"
    assert layering_violations(source, "modalmerge.analysis.fake") == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_over_the_size_a_reader_holds(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines (at most {MAX_LINES}): split it"
