"""Places that are parts of a larger place: the evidence behind ``data.parts``' defaults.

    .venv/bin/python experiments/parts/run.py        # about 6 minutes on 2 cores

1. What the rule does to Poland's and Mexico's largest agglomerations (every place of 500+
   people, the engine's defaults, one scenario): their population, members and the other
   cores inside them, with the rule off and at several densities and ratios.
2. What it does to the place-level CBSA benchmark (experiments/cbsa, every US place): the
   held-out F1 of OMB 2023's metropolitan outlying counties, scenario chosen on the other half.
Writes the tables into this folder's README.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import agglo  # noqa: E402
from experiments.cbsa import places as P  # noqa: E402
from experiments.cbsa.run import build_table, counties_table, halves  # noqa: E402
from experiments.common import agglo_run, write_results  # noqa: E402

RULES = {  # name: (data.parts, density per km², ratio)
    "off": ("off", 3000.0, 2.0),
    "3000/2 (default)": ("on", 3000.0, 2.0),
    "1500/2": ("on", 1500.0, 2.0),
    "750/2": ("on", 750.0, 2.0),
    "3000/5": ("on", 3000.0, 5.0),
}
CITIES = {
    "PL": ["Warsaw", "Wrocław", "Kraków", "Łódź", "Gdańsk"],
    "MX": ["Mexico City", "Guadalajara", "Monterrey", "Puebla", "Oaxaca"],
}
OUT = ROOT / "results" / "parts"


def city_rows(ds, cities: list[str], mode: str) -> list[str]:
    """Per city: its agglomeration's population, members and the other cores within twice
    its own radius at 3 000 people per km² (cores inside the city, as a reader sees them)."""
    from agglo.kernels.reach import haversine_km

    names, pop = ds["name"].values, ds["population"].values
    lat, lon = ds["lat"].values, ds["lon"].values
    core = ds["core"].sel(mode=mode).values.reshape(-1)
    size = ds["agglo_population"].sel(mode=mode).values.reshape(-1)
    cores = np.flatnonzero(core == np.arange(core.size))
    out = []
    for city in cities:
        i = max(np.flatnonzero(names == city), key=lambda k: pop[k])
        r = np.sqrt(pop[i] / (np.pi * 3000.0))
        inside = sum(haversine_km(lat[i], lon[i], lat[c], lon[c]) <= 2 * r for c in cores if c != i)
        out.append(f"{size[i] / 1e6:.2f} M, {int((core == i).sum()) - 1} members, {inside} cores inside")
    return out


def agglomerations() -> list[str]:
    lines = []
    for cc, cities in CITIES.items():
        rows = []
        for name, (parts, density, ratio) in RULES.items():
            settings = {"data.country": cc, "data.admin1": None, "data.parts": parts, "data.parts_density": density}
            settings |= {"data.parts_ratio": ratio, "executor.kind": "synchronous", "store.mode": "overwrite"}
            ds = agglo.run(settings | {"store.path": str(OUT / f"{cc}-{parts}-{density:g}-{ratio:g}.zarr")})
            rows.append([name, len(ds["town"]), *city_rows(ds, cities, "commute")])
        frame = pd.DataFrame(rows, columns=["rule (density/ratio)", "towns", *cities])
        lines += [f"{cc}, commuting at the defaults (60 min, beta 2, threshold 0.15):", "", "```"]
        lines += [frame.to_string(index=False), "```", ""]
    return lines


def cbsa() -> list[str]:
    table_c, _ = build_table()
    split = halves(table_c)
    counties, areas = counties_table(), P.delineation(ROOT)
    rows = []
    for name, (parts, density, ratio) in RULES.items():
        table = P.build_places(counties, areas, None if parts == "off" else (density, ratio))
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"cbsa_places_{parts}_{density:g}_{ratio:g}.csv"
        table.drop(columns=["county"]).to_csv(path, index=False)
        store = agglo_run(
            "experiment=cbsa_places", f"data.path={path}", "store.mode=overwrite",
            f"store.path={OUT / f'cbsa-{parts}-{density:g}-{ratio:g}.zarr'}",
        )  # fmt: skip
        ds = agglo.open_results(str(ROOT / store))
        held = P.held_out_places(ds, table, areas, split)
        f1 = held["f1 held-out"].to_numpy()
        rows.append([name, int((table["town_id"] < P.REST_ID).sum()), f1[0], f1[1], f1.mean()])
    frame = pd.DataFrame(rows, columns=["rule (density/ratio)", "US places", "F1 held out A", "F1 held out B", "mean"])
    return [
        "US, the place-level CBSA benchmark (experiments/cbsa; a left-out place's people go back to its "
        "county's remainder town; scenario, weight and tau chosen on the other half of the states):",
        "",
        "```",
        frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"),
        "```",
    ]


def main() -> int:
    lines = agglomerations() + cbsa()
    print(write_results(HERE / "README.md", lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
