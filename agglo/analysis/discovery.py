"""Scenario discovery: which box of parameter values gives the cases of interest.

PRIM (Friedman & Fisher 1999), as the EMA Workbench uses it: start from the box of all
scenarios; repeatedly peel off the slice (the lowest or highest ``alpha`` share of one
numeric key's values in the box, or one value of a text key) whose removal leaves the
highest density of cases; stop when the box holds less than ``mass_min`` of all
scenarios. Each box on the way has a coverage (cases inside / all cases), a density
(cases inside / scenarios inside) and a mass (scenarios inside / all). The box returned
is the densest one whose coverage is still at least ``min_coverage``. No pasting step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Box:
    limits: dict  # key -> (low, high) for numbers, or sorted list of kept values for text
    coverage: float
    density: float
    mass: float

    def rules(self, full: dict) -> list[str]:
        """Readable restrictions (only keys the box restricts)."""
        out = []
        for key, lim in self.limits.items():
            if isinstance(lim, tuple):
                lo, hi = lim
                flo, fhi = full[key]
                if lo > flo and hi < fhi:
                    out.append(f"{lo:g} <= {key} <= {hi:g}")
                elif lo > flo:
                    out.append(f"{key} >= {lo:g}")
                elif hi < fhi:
                    out.append(f"{key} <= {hi:g}")
            elif len(lim) < len(full[key]):
                out.append(f"{key} in {{{', '.join(map(str, lim))}}}")
        return out or ["(no restriction)"]


def _inside(x: dict, limits: dict) -> np.ndarray:
    keep = None
    for key, lim in limits.items():
        col = x[key]
        k = (col >= lim[0]) & (col <= lim[1]) if isinstance(lim, tuple) else np.isin(col, lim)
        keep = k if keep is None else keep & k
    return keep


def prim(x: dict, y: np.ndarray, alpha: float = 0.05, mass_min: float = 0.05, min_coverage: float = 0.5):
    """PRIM on scenario inputs ``x`` (key -> column) and boolean cases ``y``.

    Returns ``(box, trajectory)``: the chosen :class:`Box` and every box peeled to.
    """
    y = np.asarray(y, dtype=bool)
    n, n_cases = y.shape[0], int(y.sum())
    limits = {}
    for key, col in x.items():
        limits[key] = (
            (float(np.min(col)), float(np.max(col)))
            if np.issubdtype(col.dtype, np.number)
            else sorted(set(col.tolist()))
        )
    full = dict(limits)

    def box(lim):
        inside = _inside(x, lim)
        m = int(inside.sum())
        cases = int(y[inside].sum())
        return Box(dict(lim), cases / n_cases if n_cases else 0.0, cases / m if m else 0.0, m / n)

    trajectory = [box(limits)]
    while True:
        inside = _inside(x, limits)
        best = None
        for key, col in x.items():
            vals = col[inside]
            options = []
            if isinstance(limits[key], tuple):
                lo_q, hi_q = np.quantile(vals.astype(np.float64), [alpha, 1 - alpha])
                higher = vals[vals > lo_q]
                lower = vals[vals < hi_q]
                if higher.size:
                    options.append((float(higher.min()), limits[key][1]))
                if lower.size:
                    options.append((limits[key][0], float(lower.max())))
            elif len(limits[key]) > 1:
                options += [[v for v in limits[key] if v != drop] for drop in limits[key]]
            for option in options:
                trial = dict(limits, **{key: option})
                keep = _inside(x, trial)
                m = int(keep.sum())
                if m == 0 or m == int(inside.sum()) or m / n < mass_min:
                    continue
                density = y[keep].mean()
                if best is None or density > best[0]:
                    best = (density, trial)
        if best is None:
            break
        limits = best[1]
        trajectory.append(box(limits))
    eligible = [b for b in trajectory if b.coverage >= min_coverage] or trajectory[:1]
    chosen = max(eligible, key=lambda b: (b.density, b.coverage))
    chosen.full = full  # type: ignore[attr-defined]
    return chosen, trajectory
