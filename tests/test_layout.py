"""The package's shape, as docs/architecture.md states it: the configuration machinery stays at
the edge, and no module or function grows past what a newcomer reads in one sitting."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import agglo

PACKAGE = Path(agglo.__file__).parent
MODULE_LINES = 350  # "about 350": a module a newcomer reads in one sitting
FUNCTION_LINES = 60

# What a Dask worker imports to obtain its network and compute its pieces and batches.
WORKER_MODULES = (
    "agglo.engine.executors.graph",
    "agglo.engine.executors.task",
    "agglo.engine.executors.warm",
    "agglo.engine.network.recipe",
    "agglo.engine.compute.batch",
    "agglo.engine.data.load",
)


def test_workers_import_neither_hydra_nor_omegaconf():
    """Hydra composes at the edge; planning, compute and workers read the typed config."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in WORKER_MODULES)
        + "print(sorted(m for m in ('hydra', 'omegaconf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"a worker module imports {out.strip()}"


def _sizes():
    modules, functions = {}, {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = str(path.relative_to(PACKAGE.parent))
        modules[name] = len(source.splitlines())
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions[f"{name}:{node.lineno} {node.name}"] = node.end_lineno - node.lineno + 1
    return modules, functions


def test_no_module_over_350_lines():
    modules, _ = _sizes()
    long = {name: n for name, n in modules.items() if n > MODULE_LINES + 10}
    assert not long, f"modules over about {MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
    _, functions = _sizes()
    long = {name: n for name, n in functions.items() if n > FUNCTION_LINES}
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"


# The command line is one module over the Python API: what it may import from agglo.
CLI_IMPORTS = ("agglo.api", "agglo.views.summary", "agglo.engine.errors", "agglo.engine.executors.interrupts")


def test_the_command_line_calls_the_python_api():
    """Every command is an API call and a print, so a notebook gets what the shell gets."""
    tree = ast.parse((PACKAGE / "cli.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agglo"):
            found.add(node.module if node.module != "agglo" else f"agglo.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("agglo"))
    assert found, "cli.py imports nothing from agglo"
    assert found <= set(CLI_IMPORTS), f"cli.py reaches past the API: {sorted(found - set(CLI_IMPORTS))}"
