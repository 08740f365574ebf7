"""The layers of docs/ARCHITECTURE.md, enforced: imports run downward only, no import cycles, and the
layers a survey process loads never import torch.

The import graph is read from the source (an AST walk over every import statement, function-level ones
included; `if TYPE_CHECKING:` blocks are annotations, not imports), so a violation fails here before it
can fail on a user's machine.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Module prefix -> layer (the longest matching prefix wins).
LAYER_OF = {
    "metrics": "metrics",
    "study": "faces",                # study/__init__.py: `load_model` and `Classifier`, loaded lazily
    "study.training": "faces",       # public import paths that DESIGN.md gives for names living deeper
    "study.examples": "faces",
    "study.resources": "resources",
    "study.images": "images",
    "study.models": "models",
    "study.explainers": "explainers",
    "study.scoring": "scoring",
    "study.protocol": "protocol",
    "study.store": "store",
    "study.stimuli": "stimuli",
    "study.survey": "survey",
    "study.results": "results",
    "study.commands": "top",
    "study.cli": "top",
    "study.demo": "top",
    "ui": "ui",
}
# Layer -> the layers it may import (besides itself). This is the picture in docs/ARCHITECTURE.md.
MAY_IMPORT = {
    "resources": set(),
    "metrics": set(),
    "images": {"resources"},
    "models": {"resources", "metrics", "images"},
    "explainers": {"resources", "metrics", "images", "models"},
    "scoring": {"resources", "metrics", "images", "models", "explainers"},
    "protocol": {"resources", "images"},
    "store": {"resources", "images", "protocol"},
    "stimuli": {"resources", "metrics", "images", "models", "explainers", "protocol", "store"},
    "survey": {"resources", "images", "protocol", "store"},
    "results": {"resources", "images", "protocol", "store", "scoring"},
    "ui": {"resources", "images", "protocol", "store", "survey", "results"},
    "faces": {"models", "explainers"},
    "top": {"resources", "metrics", "images", "models", "explainers", "scoring", "protocol", "store", "stimuli",
            "survey", "results", "faces", "ui"},
}
TORCH_FREE = {"protocol", "store", "survey", "results", "ui", "resources"}
# Modules of a torch-importing layer that torch-free layers may use: they import nothing heavy.
TORCH_FREE_MODULES = {"study.images", "study.images.items", "study.images.specs", "study.images.sets",
                      "study.images.digits", "study.images.imagenet", "study.scoring", "study.scoring.catalog",
                      "study.scoring.files", "study.scoring.figures"}
HEAVY = {"torch", "torchvision"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for top in ("study", "metrics", "ui"):
        for path in sorted((ROOT / top).rglob("*.py")):
            found[module_name(path)] = path
    return found


def layer(module: str) -> str | None:
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len, default=None)
    return LAYER_OF[best] if best else None


def imports(module: str, path: Path, known: set[str], *, on_import: bool = False) -> set[str]:
    """Every module `module` imports (ours by module name, third-party by top-level name); `on_import`: only
    those its import runs (not the ones inside functions, which run when they are called)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(node) for stmt in ast.walk(tree) if isinstance(stmt, ast.If)
            and "TYPE_CHECKING" in ast.unparse(stmt.test) for node in ast.walk(stmt)}
    if on_import:
        skip |= {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for node in ast.walk(fn)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {name if name in known else name.split(".")[0] for name in found}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


@pytest.fixture(scope="module")
def import_time_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found), on_import=True) for name, path in found.items()}


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer(m) is None] == []


def test_imports_run_downward_only(graph):
    wrong = sorted(f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in graph.items() for d in deps
                   if layer(d) and layer(d) != layer(m) and layer(d) not in MAY_IMPORT[layer(m)])
    assert wrong == []


def test_there_are_no_import_cycles(graph):
    ours = {m: {d for d in deps if d in graph} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(ours[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(ours):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_survey_layers_never_import_torch(graph, import_time_graph):
    """No torch in their own modules, nor in anything importing them loads, however indirectly (importing
    `a.b.c` runs `a` and `a.b` too)."""
    def loads(module, seen):
        parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        for dep in sorted(import_time_graph.get(module, set()) | (parents & graph.keys())):
            if dep not in seen:
                seen.add(dep)
                loads(dep, seen)
        return seen

    heavy = {}
    for module, deps in graph.items():
        if layer(module) in TORCH_FREE or module in TORCH_FREE_MODULES:
            bad = sorted((deps & HEAVY) | {r for r in loads(module, {module}) if r in HEAVY})
            if bad:
                heavy[module] = bad
    assert heavy == {}


def test_metrics_never_imports_study_or_ui(graph):
    assert sorted(m for m, deps in graph.items() if m.startswith("metrics")
                  and any(d.split(".")[0] in ("study", "ui") for d in deps)) == []


def test_the_survey_app_starts_without_torch():
    """What `camstudy serve` loads: the Streamlit app and everything it imports (run bare, as a script)."""
    code = ("import sys, logging; logging.disable(logging.WARNING); import ui.app, study.survey.simulator, "
            "study.results.report, study.results.power, study.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
