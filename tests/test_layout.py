"""The house as DESIGN.md lays it out, checked: stages in their folders, dependencies pointing one
way, functions short, no module named like the standard library's, and `textlstm --help` fast."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "textlstm"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every textlstm module that ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name.startswith("textlstm")}


def test_each_stage_lives_in_its_folder():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert {"cli", "data", "text", "training", "tuning", "lm", "explain"} <= folders
    text = {p.stem for p in (PACKAGE / "text").glob("*.py")}
    assert {"tokenizers", "subword", "scan", "vocab", "vectors", "encoder", "cache"} <= text
    assert {p.stem for p in (PACKAGE / "tuning").glob("*.py")} >= {"study", "workers", "results"}
    assert {p.stem for p in (PACKAGE / "training").glob("*.py")} >= {"loop", "trainer", "state"}
    assert {p.stem for p in (PACKAGE / "lm").glob("*.py")} >= {"model", "streams", "pretrainer"}
    commands = {"train", "pretrain", "check", "init", "vocab", "tune", "evaluate", "predict"}
    commands |= {"explain", "report", "compare", "export", "serve"}
    assert commands | {"app", "progress", "__init__"} == {
        p.stem for p in (PACKAGE / "cli").glob("*.py")
    }


def test_no_module_shadows_a_standard_library_module():
    clashes = [str(p) for p in MODULES if p.stem in sys.stdlib_module_names]
    assert clashes == []


def test_the_longest_function_is_under_60_lines():
    lengths = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                lengths.append((node.end_lineno - start + 1, f"{path.name}:{node.name}"))
    assert max(lengths) < (60, "")


# module -> textlstm modules it must never import: dependencies point one way,
# cli -> library -> stages -> recipe/errors/runtime
FORBIDDEN = {
    "textlstm.text": (
        "textlstm.training",
        "textlstm.tuning",
        "textlstm.cli",
        "textlstm.predict",
        "textlstm.batching",
        "textlstm.model",
    ),
    "textlstm.data": ("textlstm.training", "textlstm.tuning", "textlstm.cli", "textlstm.predict"),
    "textlstm.model": ("textlstm.training", "textlstm.tuning", "textlstm.cli", "textlstm.predict"),
    "textlstm.training": (
        "textlstm.tuning",
        "textlstm.cli",
        "textlstm.predict",
        "textlstm.evaluation",
    ),
    "textlstm.predict": ("textlstm.training", "textlstm.tuning", "textlstm.cli"),
    "textlstm.evaluation": ("textlstm.training", "textlstm.tuning", "textlstm.cli"),
    "textlstm.checkpoint": ("textlstm.training", "textlstm.tuning", "textlstm.cli"),
    "textlstm.tuning": ("textlstm.cli",),
    "textlstm.lm": ("textlstm.tuning", "textlstm.cli", "textlstm.predict", "textlstm.evaluation"),
    "textlstm.explain": ("textlstm.training", "textlstm.tuning", "textlstm.cli", "textlstm.lm"),
    "textlstm.report": ("textlstm.training", "textlstm.tuning", "textlstm.cli", "textlstm.lm"),
    "textlstm.export": ("textlstm.training", "textlstm.tuning", "textlstm.cli", "textlstm.lm"),
    "textlstm.serve": ("textlstm.training", "textlstm.tuning", "textlstm.cli", "textlstm.lm"),
    "textlstm.recipe": ("textlstm.",),
    "textlstm.errors": ("textlstm.",),
    "textlstm.settings": ("textlstm.",),
}
ALLOWED = {
    "textlstm.recipe": {"textlstm.errors", "textlstm.files"},
    "textlstm.files": {"textlstm.errors"},
    # the hooks it implements are torch-free interfaces, not training code
    "textlstm.report.tensorboard": {"textlstm.training.events", "textlstm.lm.events"},
}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_dependencies_point_one_way(path):
    name = module_name(path)
    rules = [
        bad for prefix, bad in FORBIDDEN.items() if name == prefix or name.startswith(prefix + ".")
    ]
    allowed = ALLOWED.get(name, set())
    wrong = sorted(
        i
        for i in imports(path)
        for bad in rules
        for prefix in bad
        if i.startswith(prefix)
        and not i.startswith(name)
        and not any(i == a or i.startswith(a + ".") for a in allowed)
    )
    assert wrong == [], f"{name} imports {wrong}"


def test_cli_modules_hold_no_tensor_code():
    for path in (PACKAGE / "cli").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        assert "import torch" not in source and "import numpy" not in source, path.name


def test_help_does_not_import_torch_or_datasets():
    code = (
        "import sys\nsys.argv = ['textlstm', '--help']\nfrom textlstm.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'datasets', 'optuna') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Usage: textlstm" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY []"
    for command in ("train", "tune", "predict"):
        sub = code.replace("'--help'", f"'{command}', '--help'")
        done = subprocess.run(
            [sys.executable, "-c", sub], capture_output=True, text=True, timeout=120
        )
        assert done.stdout.strip().splitlines()[-1] == "HEAVY []", command


def test_every_exported_name_is_the_function_or_class_even_after_its_module_is_imported():
    """A package attribute named like a submodule would be the module once that is imported."""
    import importlib
    import types

    import textlstm

    for path in MODULES:
        if path.name != "__main__.py":  # that one runs the command
            importlib.import_module(module_name(path))
    for package in (
        "textlstm",
        "textlstm.training",
        "textlstm.tuning",
        "textlstm.data",
        "textlstm.lm",
    ):
        module = importlib.import_module(package)
        for name in module.__all__:
            if name != "__version__":
                assert not isinstance(getattr(module, name), types.ModuleType), f"{package}.{name}"
    assert callable(textlstm.predict_files) and callable(textlstm.tune)
