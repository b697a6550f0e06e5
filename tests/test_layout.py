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
