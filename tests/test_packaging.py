"""The wheel holds what the code needs: every package, its data files, and a declared dependency for every
import; installed without `-e`, away from this checkout, `camstudy build` and `camstudy explain` run.

(.ci/run also installs the wheel into a fresh virtual environment and runs the sample study.)
"""
from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def test_every_package_in_the_tree_is_in_the_wheel():
    tree = find_namespace_packages(where=str(ROOT), include=["study*", "metrics*", "ui*"], exclude=["*__pycache__*"])
    assert sorted(SETUPTOOLS["packages"]) == sorted([*tree, "study._data"])
    assert SETUPTOOLS["package-dir"] == {"study._data": "data"}


def test_every_data_file_is_package_data():
    def shipped(package: str, folder: Path) -> list[str]:
        globs = SETUPTOOLS["package-data"][package]
        return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                and p.suffix != ".py" and "__pycache__" not in p.parts
                and not any(p.relative_to(folder).match(g) for g in globs)]

    assert shipped("study._data", ROOT / "data") == []
    assert shipped("ui", ROOT / "ui") == []


def _third_party_imports() -> set[str]:
    found = set()
    for path in [*ROOT.glob("study/**/*.py"), *ROOT.glob("metrics/*.py"), *ROOT.glob("ui/*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"study", "metrics", "ui", "__future__"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def test_every_import_is_a_declared_dependency():
    """Installed imports map to their distributions; each is a dependency or, for optional backends
    (captum, timm, ...), in an extra."""
    project = PYPROJECT["project"]
    required = _requirement_names(project["dependencies"])
    optional = set().union(*(_requirement_names(r) for r in project["optional-dependencies"].values()))
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for name in sorted(_third_party_imports()):
        dists = {d.lower().replace("_", "-") for d in distributions.get(name, [name])}
        if not dists & (required | optional):
            missing[name] = sorted(dists)
    assert missing == {}


def test_a_wheel_installed_without_e_builds_a_study_and_explains(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(wheels.glob("camstudy-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "study/protocol/tasks/__init__.py" in names and "study/_data/bundled.toml" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # The installed copy first, then the dependencies of this environment (not this checkout: cwd is elsewhere).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}
    config = tmp_path / "tiny.toml"
    config.write_text('name = "wheel check"\nimages = "bundled"\nmethods = ["random"]\npractice_trials = 0\n'
                      'attention_checks = 0\n[text]\nconsent_md = "c"\ninstructions_md = "i"\ndebrief_md = "d"\n'
                      '[[tasks]]\ntype = "rating"\ntrials = 2\n', encoding="utf-8")

    def camstudy(*args: str) -> str:
        code = "import sys, study; from study.cli import main; print(study.__file__); sys.exit(main(sys.argv[1:]))"
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.startswith(str(target)), out.stdout   # the installed wheel ran, not this checkout
        return out.stdout

    camstudy("build", str(config), "--out", str(tmp_path / "study"))
    assert (tmp_path / "study" / "study.db").is_file() and any((tmp_path / "study" / "stimuli").glob("*.png"))
    camstudy("explain", "--images", "bundled", "--max-images", "2", "--methods", "gradcam", "--out", str(tmp_path / "maps"))
    assert sorted(p.name for p in (tmp_path / "maps").iterdir() if p.is_dir()) == ["chelsea", "coffee"]
    assert (tmp_path / "maps" / "chelsea" / "gradcam.npy").is_file()


def test_a_module_missing_from_an_installation_is_one_line_not_a_traceback(monkeypatch, capsys):
    import importlib

    from study.cli import main

    real = importlib.import_module

    def broken(name, *args):
        if name == "study.commands.build":
            raise ModuleNotFoundError("No module named 'study.protocol.tasks'", name="study.protocol.tasks")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    assert main(["build", "x.toml", "--out", "s"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot import study.protocol.tasks" in err and "reinstall camstudy" in err
