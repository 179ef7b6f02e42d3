"""The package's layers import one way (data → models → methods/training → memorisation/probing → experiments),
and no experiment runner imports another: what two runners share lives in the experiment core."""

import ast
from pathlib import Path

import memlib

SRC = Path(memlib.__file__).parent
#: Layers, lowest first; a module may import from its own layer or lower ones only.
LAYERS = [
    {"atomic", "device", "evidence", "provenance", "stats", "verdicts"},
    {"data"},
    {"models"},
    {"losses", "methods", "training"},
    {"memorization", "probing", "plots"},
    {"experiments"},
]


def _layer(top: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(path: Path) -> list[str]:
    """memlib modules imported by ``path``, as dotted names relative to memlib."""
    pkg = path.relative_to(SRC).with_suffix("").parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(pkg[: len(pkg) - node.level + 1])
            mod = ".".join(base + ([node.module] if node.module else []))
            out.append(mod)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("memlib."):
            out.append(node.module[len("memlib.") :])
    return [m for m in out if m]


def test_layers_import_one_way():
    bad = []
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC).parts
        if rel == ("__init__.py",):  # memlib/__init__.py re-exports the public API
            continue
        own = _layer(rel[0].removesuffix(".py"))
        for mod in _imports(f):
            if _layer(mod.split(".")[0]) > own:
                bad.append(f"{'/'.join(rel)} imports {mod}")
    assert bad == []


def test_no_runner_imports_another_runner():
    runners = sorted((SRC / "experiments").glob("*_run.py"))
    assert len(runners) >= 5
    bad = [
        f"{f.name} imports {m}"
        for f in runners
        for m in _imports(f)
        if m.startswith("experiments.") and m.split(".")[1].endswith("_run")
    ]
    assert bad == []
