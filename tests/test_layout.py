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


def imports(path: Path, prefix: str = "textlstm.") -> set[str]:
    """Every textlstm module that ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {name for name in found if name.startswith(prefix)}


def test_each_stage_lives_in_its_folder():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert {"cli", "data", "text", "training", "tuning", "lm", "explain"} <= folders
    assert {"recipe", "model", "run", "predict", "evaluation"} <= folders
    top = {p.stem for p in PACKAGE.glob("*.py")}
    # at the top: the public API, errors and process-wide settings only; every stage in a folder
    assert top == {"__init__", "__main__", "errors", "files", "runtime", "settings", "threads"}
    assert {p.stem for p in (PACKAGE / "predict").glob("*.py")} >= {"predictor", "precision"}
    assert {p.stem for p in (PACKAGE / "recipe").glob("*.py")} >= {"schema", "load", "problems"}
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


# The layers, lowest first: a package imports its own modules and packages of lower layers only,
# so dependencies point one way (cli -> library -> stages -> recipe/errors/runtime) and no two
# packages import each other. Top-level modules count as packages of their own.
LAYERS = (
    ("errors", "settings"),
    ("files", "runtime", "threads"),
    ("recipe",),
    ("text",),
    ("model",),
    ("data",),
    ("run",),  # what a run folder holds: checkpoint, scores, plots (below training and evaluation)
    ("training", "predict"),
    ("lm", "evaluation", "explain", "export", "serve"),
    ("tuning", "report"),
    ("cli",),
    ("__main__",),
)
LAYER = {package: rank for rank, names in enumerate(LAYERS) for package in names}
# beyond the layers: what reads a finished run folder never imports the code that trains one
NEVER = dict.fromkeys(("explain", "export", "serve", "predict"), ("training", "lm"))


def package_of(module: str) -> str:
    """``textlstm.training.loop`` -> ``training``; ``textlstm.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__version__" else "textlstm"


def package_graph(root: Path) -> dict[str, set[str]]:
    """package -> the other packages its modules import, for the package folder ``root``."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        prefix = root.name + "."
        found = {package_of(i) for i in imports(path, prefix)} - {package_of(name)}
        graph.setdefault(package_of(name), set()).update(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one package (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_two_packages_import_each_other_even_through_others():
    assert cycles(package_graph(PACKAGE)) == []


def test_the_cycle_check_finds_a_cycle_that_a_package_builds(tmp_path):
    """Three packages in a ring (a -> b -> c -> a) and one outside it: the ring is found."""
    root = tmp_path / "textlstm"
    for package, imported in {"a": "b", "b": "c", "c": "a", "d": "a"}.items():
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (root / package / "mod.py").write_text(f"def f():\n    from textlstm.{imported} import x\n")
    assert cycles(package_graph(root)) == [["a", "b", "c"]]
    (root / "c" / "mod.py").write_text("import os\n")
    assert cycles(package_graph(root)) == []


def test_every_package_has_a_layer():
    assert set(package_graph(PACKAGE)) - {"textlstm"} <= set(LAYER)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_dependencies_point_one_way(path):
    name = module_name(path)
    own = package_of(name)
    if own == "textlstm":  # the public API: names imported on first use, by string
        return
    wrong = sorted(
        i
        for i in imports(path)
        if package_of(i) not in (own, "textlstm")  # the root holds only the version string
        and (LAYER[package_of(i)] >= LAYER[own] or package_of(i) in NEVER.get(own, ()))
    )
    assert wrong == [], f"{name} (layer {LAYER[own]}) imports {wrong}"


def test_every_command_is_a_shim_of_at_most_30_lines():
    """A command parses, makes one library call and prints; what it decides is library code."""
    lengths = {}
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                getattr(getattr(d, "func", d), "attr", None) == "command"
                for d in node.decorator_list
            ):
                lengths[node.name] = node.end_lineno - node.body[0].lineno + 1
    assert len(lengths) == 13 and max(lengths.values()) <= 30, lengths


def test_the_launchers_environment_is_read_in_one_place():
    """RANK, WORLD_SIZE and their kin are read by ``settings.launch`` and nowhere else."""
    readers = [
        path.relative_to(PACKAGE).as_posix()
        for path in MODULES
        if any(f'"{v}"' in path.read_text(encoding="utf-8") for v in ("WORLD_SIZE", "LOCAL_RANK"))
    ]
    assert readers == ["settings.py"]


def test_the_text_stage_takes_its_settings_not_the_recipe():
    """``text_settings`` picks the text stage's part of a recipe; nothing else there takes one."""
    takers = []
    for path in (PACKAGE / "text").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hints = [ast.unparse(a.annotation) for a in node.args.args if a.annotation]
                if "Recipe" in hints:
                    takers.append(node.name)
    assert takers == ["text_settings"]


def test_no_test_waits_on_the_clock():
    """Tests wait for what the code says (hooks, events, gates, its own output), never a time."""
    tests = Path(__file__).resolve().parent
    sleepers = [
        path.name
        for path in sorted(tests.rglob("*.py"))
        if any(word in path.read_text(encoding="utf-8") for word in ("sleep(", "monotonic("))
        and path.name != "test_layout.py"
    ]
    assert sleepers == []


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
