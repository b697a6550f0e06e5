"""National calibration on observed flows, held out by states, one command from the
repository root:

    .venv/bin/python experiments/calibration/run.py        # about 3 minutes on 2 cores

Every observed US county-to-county commuting flow (ACS 2009-2013, tests/data/us_commuting_flows)
between the counties of tests/data/us_cbsa (2020 internal points, ACS 2022 populations). The
engine's gravity (docs/model.md: production-constrained, power or exponential deterrence of the
commuting travel time at the default speed and circuity, with or without the self term) is
fitted with ``agglo.tools.calibrate.fit_production`` on the origins of one half of the states
(alternately by name, as experiments/cbsa splits them) and scored on the other half: CPC,
pseudo-R², and the share of counties whose largest flow to another county goes where the
model's does. The engine's defaults are scored beside. Tables go into this folder's README.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agglo.engine.config import AggloConfig  # noqa: E402
from agglo.tools import calibrate  # noqa: E402
from experiments.common import write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
R_KM = 6371.0088


def load() -> tuple[pd.DataFrame, np.ndarray, dict]:
    counties = pd.read_csv(ROOT / "tests/data/us_cbsa/counties_2020_dist.csv", dtype={"GEOID": str})
    counties = counties[counties["Population"] > 0].reset_index(drop=True)
    flows = pd.read_csv(
        ROOT / "tests/data/us_commuting_flows/acs_2009_2013_county_flows.csv",
        dtype={"home_fips": str, "work_fips": str},
    )
    at = {g: k for k, g in enumerate(counties["GEOID"])}
    known = flows["home_fips"].isin(at) & flows["work_fips"].isin(at)
    info = {"workers": int(flows["workers"].sum()), "dropped": int(flows.loc[~known, "workers"].sum())}
    flows = flows[known]
    n = len(counties)
    dense = np.zeros((n, n))
    np.add.at(dense, (flows["home_fips"].map(at).to_numpy(), flows["work_fips"].map(at).to_numpy()), flows["workers"])
    return counties, dense, info


def minutes(counties: pd.DataFrame) -> np.ndarray:
    """docs/model.md's commuting travel time between the counties' internal points, defaults."""
    mode = AggloConfig().commute
    phi, lam = np.radians(counties["Latitude"].to_numpy()), np.radians(counties["Longitude"].to_numpy())
    h = np.sin((phi[None, :] - phi[:, None]) / 2) ** 2
    h += np.cos(phi)[:, None] * np.cos(phi)[None, :] * np.sin((lam[None, :] - lam[:, None]) / 2) ** 2
    km = 2 * R_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
    t = 60 * mode.circuity * km / mode.speed_kmh
    np.fill_diagonal(t, 1.0)  # the diagonal is the self term's, set by the fit
    return np.maximum(t, mode.min_time_min)


def halves(states: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    names = sorted(states.unique())
    a = states.isin(set(names[0::2])).to_numpy()
    return a, ~a


def main() -> int:
    started = time.perf_counter()
    counties, flows, info = load()
    t = minutes(counties)
    mass = counties["Population"].to_numpy(dtype=float)
    a, b = halves(counties["State"])
    defaults = AggloConfig().commute
    lines = [
        f"{len(counties)} counties; {info['workers']:,} workers in the flows, {info['dropped']:,} of them between "
        "counties the 2020 gazetteer does not list (Connecticut's old counties and a few renamed ones), left out. "
        f"Halves: {a.sum()} and {b.sum()} origin counties (states alternately by name).",
        "",
        "| deterrence | self term | fitted on | gamma | beta | self time (min) | CPC fit / held out | "
        "pseudo-R² fit / held out | dominant destination right, fit / held out |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for decay in ("power", "exponential"):
        for self_term in (False, True):
            for name, fit_rows, test_rows in (("A", a, b), ("B", b, a)):
                rows = np.flatnonzero(fit_rows)
                prof = calibrate.fit_production(flows[rows], t[rows], mass, decay, self_term, origins=rows)
                got = {}
                for which, mask in (("fit", fit_rows), ("held", test_rows)):
                    rows = np.flatnonzero(mask)
                    p = prof.probabilities(t[rows], mass, origins=rows)
                    got[which] = calibrate.scores(flows[rows], p, self_term, origins=rows)
                self_text = f"{prof.self_cost:.2f}" if self_term else "—"
                lines.append(
                    f"| {decay} | {'yes' if self_term else 'no'} | {name} | {prof.gamma:.3f} | {prof.beta:.4g} | "
                    f"{self_text} | {got['fit']['cpc']:.3f} / {got['held']['cpc']:.3f} | "
                    f"{got['fit']['pseudo_r2']:.3f} / {got['held']['pseudo_r2']:.3f} | "
                    f"{got['fit']['dominant_right']:.3f} / {got['held']['dominant_right']:.3f} |"
                )
                print(lines[-1], flush=True)
    default_fit = calibrate.ProfileFit(defaults.decay, defaults.gamma, defaults.beta, defaults.self_time_min, 0.0, 0)
    base = calibrate.scores(flows, default_fit.probabilities(t, mass), True)
    lines += [
        "",
        f"The engine's defaults (power, gamma {defaults.gamma:g}, beta {defaults.beta:g}, self term "
        f"{defaults.self_time_min:g} min), all counties: CPC {base['cpc']:.3f}, pseudo-R² {base['pseudo_r2']:.3f}, "
        f"dominant destination right {base['dominant_right']:.3f}.",
        "",
        f"Run time {time.perf_counter() - started:.0f} s.",
    ]
    print(write_results(HERE / "README.md", lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
