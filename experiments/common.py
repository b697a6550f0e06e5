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
    from agglo.analysis.report import plot_store
    from agglo.engine.config.compose import resolve
    from agglo.engine.errors import UserError
    from agglo.engine.run import execute

    with contextlib.chdir(ROOT):
        try:
            cfg, _ = resolve(list(overrides))
            outcome = execute(cfg, quiet=True)
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


def precision_recall_f1(correct: int, predicted: int, n_true: int) -> dict:
    """The scores of a predicted membership: ``correct`` of ``predicted`` right, ``n_true`` to find."""
    precision = correct / max(predicted, 1)
    recall = correct / max(n_true, 1)
    return {
        "predicted": int(predicted),
        "correct": int(correct),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
    }


def held_out(score_on, halves: tuple[set, set], keys: list[str]):
    """The row with the best F1 of ``score_on(fit_half)`` (a DataFrame with one row per choice,
    in the same order for any half), scored on the other half, and the reverse; beside it the
    choice's in-sample F1 and the best F1 any choice gets on the held-out half."""
    import pandas as pd

    out = []
    for name, fit, test in (("A", halves[0], halves[1]), ("B", halves[1], halves[0])):
        on_fit, on_test = score_on(fit), score_on(test)
        best = int(on_fit["f1"].to_numpy().argmax())  # the first of equal F1s
        chosen, row = on_fit.iloc[best], on_test.iloc[best]
        out.append(
            {
                "fit on": f"{name} ({len(fit)} regions)",
                **{k: chosen[k] for k in keys},
                "f1 in-sample": chosen["f1"],
                "precision held-out": row["precision"],
                "recall held-out": row["recall"],
                "f1 held-out": row["f1"],
                "best f1 on held-out half": on_test["f1"].max(),
            }
        )
    return pd.DataFrame(out)
