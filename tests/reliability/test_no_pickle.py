"""No pickle anywhere: untrusted files (models, checkpoints, caches) must never run code on load.

``src/facegcn`` may not use ``pickle`` (or ``cPickle``/``dill``/``joblib``/``shelve``/``marshal``),
``torch.load`` without ``weights_only=True``, ``np.load`` without ``allow_pickle=False``,
``allow_pickle=True``, ``eval``/``exec``, ``yaml.load`` / ``yaml.unsafe_load``, or pandas'
``read_pickle``. ``tests/``, ``benchmarks/`` and ``tools/`` may call ``torch.load`` only with
``weights_only=True``. The scan is two-fold: a regular-expression grep of the source with comments
and docstrings blanked out (prose may say "no pickle"), and an AST walk that sees calls spread
over several lines and aliases (``from torch import load``, ``import pickle as p``).

A genuinely needed exception goes into ``ALLOWED`` with its justification.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "facegcn"

# (path relative to the repository, rule) -> justification. Keep empty unless truly needed.
ALLOWED: dict[tuple[str, str], str] = {}

PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "jsonpickle"}

TEXT_RULES = {  # line by line, on the source without comments and docstrings
    "pickle": re.compile(r"(?<!allow_)pickle|\b(dill|shelve|marshal|joblib)\b", re.IGNORECASE),
    "allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "eval/exec": re.compile(r"(?<![\w.])(eval|exec)\s*\("),
    "yaml.load": re.compile(r"\byaml\s*\.\s*(load|unsafe_load|full_load|load_all|unsafe_load_all)\s*\("),
}
CALL_RULES = {  # a call (possibly spread over lines) and what its arguments must contain
    "torch.load": (re.compile(r"\btorch\s*\.\s*load\s*\("), re.compile(r"weights_only\s*=\s*True")),
    "np.load": (re.compile(r"\b(np|numpy)\s*\.\s*load\s*\("), re.compile(r"allow_pickle\s*=\s*False")),
}


def _call_text(code: str, open_paren: int) -> str:
    depth = 0
    for i in range(open_paren, len(code)):
        depth += {"(": 1, ")": -1}.get(code[i], 0)
        if depth == 0:
            return code[open_paren:i + 1]
    return code[open_paren:]


def grep_findings(code: str, rules: list[str]) -> list[tuple[int, str]]:
    found = []
    for i, line in enumerate(code.splitlines(), 1):
        for rule in rules:
            rx = TEXT_RULES.get(rule)
            if rx is not None and rx.search(line):
                found.append((i, f"grep {rule}: {line.strip()[:100]}"))
    for rule in rules:
        if rule in CALL_RULES:
            start, need = CALL_RULES[rule]
            for m in start.finditer(code):
                if not need.search(_call_text(code, m.end() - 1)):
                    line = code.count("\n", 0, m.start()) + 1
                    found.append((line, f"grep {rule}: {code.splitlines()[line - 1].strip()[:100]}"))
    return found


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts and ".venv" not in p.parts)


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def code_without_prose(source: str, tree: ast.AST) -> str:
    """The source with comments and docstrings replaced by blanks (line numbers kept)."""
    doc = _docstring_lines(tree)
    out = source.splitlines(keepends=True)
    blank = [list(line) for line in out]
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        is_doc = tok.type == tokenize.STRING and tok.start[0] in doc
        if tok.type == tokenize.COMMENT or is_doc:
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(blank[r - 1])
                for c in range(a, b):
                    if blank[r - 1][c] != "\n":
                        blank[r - 1][c] = " "
    return "".join("".join(chars) for chars in blank)


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


def ast_findings(tree: ast.AST, src_rules: bool) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    torch_names, np_names, yaml_names = {"torch"}, {"np", "numpy"}, {"yaml"}
    bare_loads: dict[str, str] = {}  # `from torch import load as tl` -> {"tl": "torch.load"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                root = a.name.split(".")[0]
                if src_rules and root in PICKLE_MODULES:
                    found.append((node.lineno, f"import {a.name}"))
                {"torch": torch_names, "numpy": np_names, "yaml": yaml_names}.get(a.name, set()).add(a.asname or a.name)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if src_rules and root in PICKLE_MODULES:
                found.append((node.lineno, f"from {node.module} import ..."))
            for a in node.names:
                if src_rules and a.name in PICKLE_MODULES | {"read_pickle", "to_pickle"}:
                    found.append((node.lineno, f"from {node.module} import {a.name}"))
                if a.name == "load" and root in ("torch", "numpy", "yaml"):
                    bare_loads[a.asname or a.name] = f"{root}.load"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        target = None
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            base = f.value.id
            if f.attr == "load" and base in torch_names:
                target = "torch.load"
            elif f.attr == "load" and base in np_names:
                target = "np.load"
            elif base in yaml_names and f.attr in ("load", "unsafe_load", "full_load", "load_all", "unsafe_load_all"):
                target = "yaml.load"
        elif isinstance(f, ast.Name):
            target = bare_loads.get(f.id)
            if src_rules and f.id in ("eval", "exec"):
                found.append((node.lineno, f"{f.id}()"))
        if isinstance(f, ast.Attribute) and src_rules and f.attr in ("read_pickle", "to_pickle"):
            found.append((node.lineno, f".{f.attr}()"))
        if target == "torch.load" and _kw(node, "weights_only") is not True:
            found.append((node.lineno, "torch.load without weights_only=True"))
        if src_rules and target == "np.load" and _kw(node, "allow_pickle") is not False:
            found.append((node.lineno, "np.load without allow_pickle=False"))
        if src_rules and target == "yaml.load":
            found.append((node.lineno, "yaml.load (use yaml.safe_load)"))
        if src_rules and _kw(node, "allow_pickle") is True:
            found.append((node.lineno, "allow_pickle=True"))
    return found


def scan(root: Path, src_rules: bool) -> list[str]:
    hits = []
    for path in _python_files(root):
        rel = str(path.relative_to(REPO))
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=rel)
        findings = ast_findings(tree, src_rules)
        rules = [*TEXT_RULES, *CALL_RULES] if src_rules else ["torch.load"]
        findings += grep_findings(code_without_prose(source, tree), rules)
        for line, rule in findings:
            key = (rel, rule.split(":")[0])
            if key not in ALLOWED:
                hits.append(f"{rel}:{line}: {rule}")
    return sorted(set(hits))


def test_scanner_catches_the_forbidden_patterns(tmp_path, monkeypatch):
    bad = '''"""No pickle here (prose is fine)."""
import pickle  # noqa
from torch import load as tload
import numpy as np, yaml, torch
x = torch.load(
    "f.pt", map_location="cpu")
y = np.load("a.npy")
z = np.load("a.npz", allow_pickle=True)
w = yaml.load(open("c.yml"))
v = eval("1+1")
ok = torch.load("f.pt", weights_only=True)
ok2 = np.load("a.npz", allow_pickle=False)
ok3 = yaml.safe_load("a: 1")
t = tload("x.pt")
'''
    tree = ast.parse(bad)
    rules = {r for _, r in ast_findings(tree, True)}
    assert {"import pickle", "torch.load without weights_only=True", "np.load without allow_pickle=False",
            "allow_pickle=True", "yaml.load (use yaml.safe_load)", "eval()"} <= rules
    lines = {ln for ln, r in ast_findings(tree, True) if r.startswith("torch.load")}
    assert lines == {5, 14}  # the multi-line call and the alias; not the weights_only=True one
    code = code_without_prose(bad, tree)
    assert "prose" not in code and "noqa" not in code and "import pickle" in code
    greps = {r.split(":")[0] for _, r in grep_findings(code, [*TEXT_RULES, *CALL_RULES])}
    assert greps == {"grep pickle", "grep allow_pickle=True", "grep eval/exec", "grep yaml.load", "grep torch.load",
                     "grep np.load"}
    assert {ln for ln, r in grep_findings(code, ["torch.load"])} == {5}
    assert ast_findings(ast.parse('"""Loads with np.load, never pickle."""\n# torch.load(x)\n'), True) == []


def test_no_pickle_in_src():
    hits = scan(SRC, src_rules=True)
    assert not hits, "unsafe deserialisation / code execution in src/facegcn:\n" + "\n".join(hits)


@pytest.mark.parametrize("folder", ["tests", "benchmarks", "tools"])
def test_torch_load_weights_only_elsewhere(folder):
    root = REPO / folder
    if not root.exists():
        pytest.skip(f"no {folder}/")
    hits = [h for h in scan(root, src_rules=False) if "reliability/test_no_pickle.py" not in h]
    assert not hits, f"torch.load without weights_only=True in {folder}/:\n" + "\n".join(hits)
