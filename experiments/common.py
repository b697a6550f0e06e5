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
