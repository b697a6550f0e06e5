"""Road times beside straight lines: a river with one bridge, one command from the repository root:

    .venv/bin/python experiments/roads/run.py        # about half a minute on 2 cores

The towns and roads of ``agglo.engine.data.roadgrid.river_and_bridge`` (625 towns on a 5 km
lattice of roads, a river between two columns crossed by one bridge, a city of 400 000 on the
east bank far from the bridge). Each mode runs twice: on the straight-line model at the roads'
speed (50 km/h, circuity 1) and on the road minutes as a travel-time table
(``MODE.travel_times``), with the default caps and a commuting cap sweep. The figure
(figures/river_bridge.png) shows each town's agglomeration under both, and the table below how
many towns change and where. No registry package ships a regional road network or inter-town
travel times for offline use (docs/traveltimes.md), hence a synthetic network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agglo.engine.data.roadgrid import river_and_bridge  # noqa: E402
from agglo.engine.store.cube import open_results  # noqa: E402
from experiments.common import agglo_run, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = ROOT / "results" / "roads"


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    towns, table = river_and_bridge()
    towns.to_csv(OUT / "towns.csv", index=False)
    table.to_parquet(OUT / "roads.parquet", index=False)
    base = [
        "data.source=table",
        f"data.path={OUT / 'towns.csv'}",
        "cores.min_population=100000",
        "commute.speed_kmh=50",
        "commute.circuity=1.0",
        "freight.speed_kmh=50",
        "freight.circuity=1.0",
        "commute.cap_min=30,45,60,90",
        "store.mode=overwrite",
    ]
    roads = [f"commute.travel_times={OUT / 'roads.parquet'}", f"freight.travel_times={OUT / 'roads.parquet'}"]
    line = open_results(agglo_run(*base, f"store.path={OUT / 'line.zarr'}"))
    road = open_results(agglo_run(*base, *roads, f"store.path={OUT / 'road.zarr'}"))
    west = towns["column"].to_numpy() < 0
    city = int(np.flatnonzero(towns["population"].to_numpy() == 400000)[0])
    rows = [
        "| mode | commute.cap_min | towns whose core changes | west-bank towns in the east city's agglomeration: straight lines | roads | towns reached per town (mean): straight lines | roads |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for mode in ("commute", "freight"):
        for cap in line["commute.cap_min"].values:
            pick = {"mode": mode, "commute.cap_min": cap}
            a, b = line.sel(pick), road.sel(pick)
            ca, cb = a["core"].values, b["core"].values
            rows.append(
                f"| {mode} | {cap:g} | {int((ca != cb).sum())} | {int(((ca == city) & west).sum())} | "
                f"{int(((cb == city) & west).sum())} | {a['n_reachable'].values.mean():.1f} | {b['n_reachable'].values.mean():.1f} |"
            )
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.4), sharey=True)
    pick = {"mode": "commute", "commute.cap_min": 30.0}
    for ax, cube, title in ((axes[0], line, "straight lines, 50 km/h"), (axes[1], road, "roads (one bridge), 50 km/h")):
        core = cube.sel(pick)["core"].values
        colour = np.where(core == city, 0, np.where(core >= 0, 1, 2))
        palette = np.array(["#c0392b", "#2471a3", "#bbbbbb"])
        ax.scatter(towns["lon"], towns["lat"], s=np.sqrt(towns["population"]) / 4, c=palette[colour], linewidths=0)
        x_river = (towns["lon"][towns["column"] == -1].mean() + towns["lon"][towns["column"] == 0].mean()) / 2
        ax.axvline(x_river, color="#5dade2", lw=4, alpha=0.6)
        bridge = towns["lat"][towns["row"] == 0].mean()
        ax.plot([x_river - 0.02, x_river + 0.02], [bridge, bridge], color="black", lw=3)
        ax.set_title(f"commuting, 30 min cap: {title}")
        ax.set_xlabel("longitude")
    axes[0].set_ylabel("latitude")
    handles = [plt.Line2D([], [], marker="o", ls="", color=c) for c in ("#c0392b", "#2471a3", "#bbbbbb")]
    fig.legend(
        handles, ["the east-bank city's agglomeration", "the west-bank city's", "none"], loc="lower center", ncol=3
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    figures = HERE / "figures"
    figures.mkdir(exist_ok=True)
    fig.savefig(figures / "river_bridge.png", dpi=110)
    body = write_results(
        HERE / "README.md",
        [
            f"{len(towns)} towns, {len(table)} road pairs within 240 min. Figure: figures/river_bridge.png.",
            "",
            *rows,
        ],
    )
    print(body)


if __name__ == "__main__":
    main()
