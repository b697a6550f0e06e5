"""Nations, one command from the repository root:

    .venv/bin/python experiments/national/run.py        # Mexico and Russia, ~1 min

Every GeoNames town (500+ people) of Mexico and of Russia, towns of 100 000+ as cores, 18
scenarios (scenarios.csv): commute cap 30/60/90 min x freight cap 120/240/360 min, each with
power deterrence (docs/model.md's betas) and with exponential deterrence (beta 0.05/min commuting,
0.01/min freight: e-folding times of 20 and 100 minutes). Writes each country's cube
(results/national_XX.zarr), figures, and the tables of this folder's README: national
coverage by scenario, and the towns that no scenario attaches.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.common import agglo_run, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
COUNTRIES = {"MX": "Mexico", "RU": "Russia"}


def run(country: str) -> str:
    store = ROOT / f"results/national_{country}.zarr"
    figures = ROOT / f"results/national_{country}_figures"
    agglo_run("experiment=mexico", f"data.country={country}", "data.admin1=null", "sweep.grid={}",
              f"sweep.table={HERE / 'scenarios.csv'}", f"store.path={store}", figures=str(figures))  # fmt: skip
    (HERE / "figures").mkdir(exist_ok=True)
    for name in ("map.png", "membership.png"):
        shutil.copyfile(figures / name, HERE / "figures" / f"{country}_{name}")
    return str(store)


def tables(country: str, store: str) -> list[str]:
    import agglo
    from agglo.analysis import stability

    ds = agglo.open_results(store)
    pop = ds["population"].values
    cov = ds["coverage"].values  # (scenario, mode)
    lines = [f"### {COUNTRIES[country]}: {ds.sizes['town']} towns", ""]
    lines.append("| commute cap | freight cap | decay | commuting coverage | freight coverage | freight - commuting |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for k in range(ds.sizes["scenario"]):
        c, f = cov[k]
        lines.append(
            f"| {ds['commute.cap_min'].values[k]:g} | {ds['freight.cap_min'].values[k]:g} | {ds['commute.decay'].values[k]} "
            f"| {100 * c:.1f} % | {100 * f:.1f} % | {100 * (f - c):+.1f} pts |"
        )
    stab = stability(ds)
    never_c = stab["p_member"].sel(mode="commute").values == 0
    never_f = stab["p_member"].sel(mode="freight").values == 0
    never = never_c & never_f
    lines += [
        "",
        f"Never attached in any scenario: {int(never_c.sum())} towns by commuting ({100 * pop[never_c].sum() / pop.sum():.1f} % "
        f"of the population), {int(never_f.sum())} by freight ({100 * pop[never_f].sum() / pop.sum():.1f} %), "
        f"{int(never.sum())} by either ({100 * pop[never].sum() / pop.sum():.1f} %). Largest towns never attached:",
        "",
    ]
    order = np.argsort(-pop * never)[:8]
    lines.append(", ".join(f"{ds['name'].values[i]} ({pop[i] / 1e3:.0f} k)" for i in order if never[i]))
    lines += ["", f"![{COUNTRIES[country]}: membership](figures/{country}_membership.png)", ""]
    return lines


def main() -> int:
    report = []
    for country in COUNTRIES:
        report += tables(country, run(country))
    print(write_results(HERE / "README.md", report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
