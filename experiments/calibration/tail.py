"""Which part of the measured deterrence makes the delineation, one command from the
repository root after run.py (about 4 minutes on 2 cores):

    .venv/bin/python experiments/calibration/tail.py

Between the counties' places, fitted on one half of the states and scored on the other as
run.py does (OMB's rule at the threshold chosen on the fitted half's observed flows): the power
law run.py fitted between places (read from this folder's README, the place-level table), the
deterrence measured per bin (``doubly.fit_free``), and each with the other's values beyond a
number of minutes. The power law is taken per bin (at the bin's middle) so that the curves
differ only where they are spliced. Writes tail.md in this folder.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from agglo.analysis import calibrate, doubly  # noqa: E402
from experiments.calibration import run as R  # noqa: E402


def power_fits() -> dict:
    """run.py's place fits, (beta, self time) per half fitted on, from its README's table."""
    found = re.findall(r"fitted between places on ([AB]) \(1, ([\d.]+), ([\d.]+)\)", (HERE / "README.md").read_text())
    fits = {half: (float(beta), float(self_time)) for half, beta, self_time in found}
    if set(fits) != {"A", "B"}:
        raise SystemExit("run.py's README has no place-level fits: run experiments/calibration/run.py first")
    return fits


def main() -> int:
    counties, observed, _ = R.load()
    a, b = R.halves(counties["State"])
    rows_of = {"A": a, "B": b}
    area_of_central, truth, _ = R.omb_areas(counties)
    workers, jobs = observed.sum(axis=1), observed.sum(axis=0)
    edges = R.FREE_EDGES
    weights = R.place_deterrence(counties).bin_weights(edges)
    middle = np.append(doubly.bin_middles(edges), 0.0)  # the self term's slot last
    fits = power_fits()
    lines = [
        "Between the counties' places, OMB's rule at the threshold from the fitted half's observed flows, scored on "
        "the other half (`tail.py`):",
        "",
        "| deterrence | fitted on | scored on | threshold | held-out CPC | precision | recall | F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for half, other in (("A", "B"), ("B", "A")):
        rows = np.flatnonzero(rows_of[other])
        measured = doubly.fit_free(observed[rows], weights, workers, jobs, origins=rows, tol=1e-6).log_f
        beta, self_time = fits[other]
        fit = doubly.DoublyFit("power", beta, self_time, 0.0, 0)
        power = np.append(fit.log_f_against_self(np.maximum(middle[:-1], 1.0)), 0.0)
        curves = [(f"power law (beta {beta:g}, self {self_time:g} min), per bin", power), ("measured", measured)]
        curves += [
            (f"power law up to {c} min, measured beyond", np.where(middle <= c, power, measured)) for c in (60, 90, 120)
        ]
        curves += [
            (f"measured up to {c} min, power law beyond", np.where(middle <= c, measured, power)) for c in (60, 90)
        ]
        for label, log_f in curves:
            model = doubly.balanced_flows(weights.table(np.exp(log_f)), workers, jobs, tol=1e-6)[0]
            tau = R.threshold_from_flows(model, observed, area_of_central, rows_of[other])
            got = R.agreement(R.delineate(model, area_of_central, tau)[rows_of[half]], truth[rows_of[half]])
            common = calibrate.cpc(observed[rows_of[half]], model[rows_of[half]])
            lines.append(
                f"| {label} | {other} | {half} | {tau:.3f} | {common:.3f} | {got['precision']:.3f} | "
                f"{got['recall']:.3f} | {got['f1']:.3f} |"
            )
            print(lines[-1], flush=True)
    (HERE / "tail.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
