"""The package's shape: one-way imports between layers, small files, an importable public API.

Reference: the layer table of CONTRIBUTING.md ("Package map"), checked on the source text with
``ast`` (imports inside functions count too: they hide cycles just as well)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "facegcn"

# lower rank = lower layer; a package may import only packages of a strictly lower rank
RANK = {
    "errors": 0,
    "limits": 1, "cache": 1, "config": 1,
    "io": 2,
    "morphable": 3, "render": 3,
    "frontend": 4, "graph": 4,
    "coarse": 5,
    "refine": 6,
    "evaluate": 7,
    "pipeline": 8,
    "train": 9,
    "apps": 10,
    "serve": 11,
    "cli": 12,
}
MAX_LINES = 450


def _package_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported facegcn sub-package) for every import in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "facegcn" else [])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "facegcn" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def test_every_package_has_a_rank():
    pkgs = {_package_of(p) for p in _sources()} - {"__init__", "__main__"}
    assert pkgs <= set(RANK), f"packages without a layer: {sorted(pkgs - set(RANK))}"


def test_imports_go_one_way():
    bad = []
    for path in _sources():
        me = _package_of(path)
        if me in ("__init__", "__main__") or path.name == "__main__.py":  # entry points may import anything
            continue
        for line, other in _imports(path):
            if other == me or other not in RANK:
                continue
            if RANK[other] >= RANK[me]:
                bad.append(f"{path.relative_to(SRC)}:{line} imports facegcn.{other}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The checker itself: an upward import in a synthetic file is found."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from facegcn.pipeline import Reconstructor\n")
    assert _imports(f) == [(2, "pipeline")]


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_files_are_small(path):
    n = len(path.read_text().splitlines())
    assert n < MAX_LINES, f"{path.relative_to(SRC)} has {n} lines (limit {MAX_LINES})"
