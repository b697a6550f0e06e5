"""What every study script does the same way: run ``agglo run`` from the project's
environment, and rewrite the RESULTS block of its README."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def agglo_run(*overrides: str) -> None:
    """``agglo run OVERRIDES --quiet`` from the repository root; stops the study on failure."""
    done = subprocess.run(
        [str(ROOT / ".venv/bin/agglo"), "run", *overrides, "--quiet"], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr or f"agglo run failed ({done.returncode})")


def write_results(readme: Path, lines: list[str]) -> str:
    """Replace everything from the RESULTS marker on with ``lines`` between the markers."""
    body = "\n".join(["<!-- RESULTS (written by run.py) -->", *lines, "<!-- /RESULTS -->"])
    old = readme.read_text() if readme.exists() else ""
    readme.write_text(old.split("<!-- RESULTS")[0].rstrip() + "\n\n" + body + "\n")
    return body
