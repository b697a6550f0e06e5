"""What every study script does the same way: run the engine in this process, and rewrite
the RESULTS block of its README."""

from __future__ import annotations

import contextlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def agglo_run(*overrides: str, figures: str | None = None) -> str:
    """What ``agglo run OVERRIDES --quiet [--figures DIR]`` does, in this process, from the
    repository root (the studies' paths are relative to it); returns the cube's path. A
    user error stops the study with its one line."""
    from agglo.engine.config import resolve
    from agglo.engine.errors import UserError
    from agglo.engine.run import execute
    from agglo.tools.analysis.report import plot_store

    with contextlib.chdir(ROOT):
        try:
            cfg, cfg_omega = resolve(list(overrides))
            outcome = execute(cfg, cfg_omega, quiet=True)
            if figures is not None:
                plot_store(outcome.path, {}, figures)
        except UserError as exc:
            raise SystemExit(f"agglo run {' '.join(overrides)}: {exc}") from None
    return outcome.path


def write_results(readme: Path, lines: list[str]) -> str:
    """Replace everything from the RESULTS marker on with ``lines`` between the markers."""
    body = "\n".join(["<!-- RESULTS (written by run.py) -->", *lines, "<!-- /RESULTS -->"])
    old = readme.read_text() if readme.exists() else ""
    readme.write_text(old.split("<!-- RESULTS")[0].rstrip() + "\n\n" + body + "\n")
    return body


def adjusted_rand_index(a, b) -> float:
    """Hubert and Arabie's adjusted Rand index of two labelings of the same items, from the
    contingency table: 1 for the same partition, about 0 for independent ones."""
    import numpy as np

    _, ia = np.unique(np.asarray(a), return_inverse=True)
    _, ib = np.unique(np.asarray(b), return_inverse=True)
    n = ia.shape[0]
    table = np.zeros((ia.max(initial=-1) + 1, ib.max(initial=-1) + 1), dtype=np.float64)
    np.add.at(table, (ia, ib), 1.0)

    def pairs(x):
        return float((x * (x - 1) / 2).sum())

    both, rows, cols, total = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0)), n * (n - 1) / 2
    expected = rows * cols / total if total else 0.0
    top = (rows + cols) / 2
    return 1.0 if top == expected else (both - expected) / (top - expected)
