"""The Oaxaca study's questions, one command from the repository root (after `make run`):

    .venv/bin/python experiments/oaxaca/run.py          # ~1 min

Four cubes: the main job (GeoNames, commute cap x freight cap), the same grid on INEGI's
2020 localities (tests/data/oaxaca; municipalities as regions), a decay comparison
(decay_scenarios.csv: power vs exponential deterrence) and a pandemic-style restriction
(commute cap 0-30 min x open/closed municipal borders, on INEGI's localities, since GeoNames'
regions are whole states). Writes the tables of this folder's README
between the RESULTS markers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agglo.engine.data.towns import inegi_localities  # noqa: E402
from experiments.common import agglo_run, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
HIGHLIGHT = {
    3527023: "state university (UTM)",
    3523240: "state university (UNSIJ campus)",
    3521014: "state university (UMAR)",
    3520994: "state university (UMAR)",
    3532656: "comparison town",
    3533439: "comparison town",
}
INEGI_CORES = [200670001, 201840001, 200790001]  # Oaxaca de Juárez, Tuxtepec, Salina Cruz


def inegi_table() -> str:
    path = HERE / "inegi_towns.csv"
    inegi_localities(str(ROOT / "tests/data/oaxaca/oaxaca_localidades_1000plus_2020.csv")).to_csv(path, index=False)
    return str(path.relative_to(ROOT))


def _km(lat1, lon1, lat2, lon2):
    p1, p2 = np.radians(lat1), np.radians(lat2)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(h))


def sizes(one, label: str) -> list[str]:
    """Per core and mode: member towns, population, radius (km to the farthest member)."""
    lat, lon, pop, names = one["lat"].values, one["lon"].values, one["population"].values, one["name"].values
    rows = []
    for mode in ("commute", "freight"):
        core = one["core"].sel(mode=mode).values
        for c in np.unique(core[core >= 0]):
            members = np.flatnonzero((core == c) & (np.arange(core.size) != c))
            if members.size == 0:
                continue
            radius = _km(lat[c], lon[c], lat[members], lon[members]).max()
            rows.append((mode, str(names[c]), members.size, pop[members].sum(), radius))
    out = [
        f"| {label} | mode | core | member towns | member population | radius (km) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    out += [f"| | {m} | {n} | {k} | {p / 1e3:.0f} k | {r:.0f} |" for m, n, k, p, r in rows]
    return out


def main() -> int:
    import agglo

    agglo_run("experiment=oaxaca")
    inegi_args = ["data.source=table", f"data.path={inegi_table()}", "data.admin1=null",
                  f"cores.ids=[{','.join(map(str, INEGI_CORES))}]"]  # fmt: skip
    agglo_run("experiment=oaxaca", *inegi_args, "store.path=results/oaxaca_inegi.zarr")
    agglo_run("experiment=oaxaca", "sweep.grid={}", f"sweep.table={HERE / 'decay_scenarios.csv'}",
          "store.path=results/oaxaca_decay.zarr")  # fmt: skip
    # GeoNames' regions are states (all of Oaxaca is one): the restriction closes INEGI's municipalities.
    agglo_run("experiment=oaxaca", *inegi_args, "sweep.grid={}", "commute.cap_min=0,10,20,30", "borders=open,closed",
          "store.path=results/oaxaca_restriction.zarr")  # fmt: skip
    main_ds = agglo.open_results(str(ROOT / "results/oaxaca.zarr"))
    inegi = agglo.open_results(str(ROOT / "results/oaxaca_inegi.zarr"))
    decay = agglo.open_results(str(ROOT / "results/oaxaca_decay.zarr"))
    restr = agglo.open_results(str(ROOT / "results/oaxaca_restriction.zarr"))
    one = main_ds.sel({"commute.cap_min": 60, "freight.cap_min": 240})
    ids = list(main_ds["town_id"].values)
    names = main_ds["name"].values
    pop = main_ds["population"].values
    lines = [
        "",
        "**Highlighted towns** (GeoNames, commute 60 min, freight 240 min):",
        "",
    ]
    lines += ["| town | population | why | commuting | freight |", "| --- | --- | --- | --- | --- |"]
    for tid, why in HIGHLIGHT.items():
        i = ids.index(tid)
        cells = []
        for mode in ("commute", "freight"):
            c = int(one["core"].sel(mode=mode).values[i])
            s = float(one["share"].sel(mode=mode).values[i])
            cells.append(
                f"{names[c]} (share {s:.3f})"
                if c >= 0
                else ("none" if np.isnan(s) else f"none (best core share {s:.3f})")
            )
        lines.append(f"| {names[i]} | {pop[i] / 1e3:.1f} k | {why} | {cells[0]} | {cells[1]} |")
    core_c = one["core"].sel(mode="commute").values
    core_f = one["core"].sel(mode="freight").values
    small = core_c != np.arange(core_c.size)
    both, only_f, only_c = (
        small & (core_c >= 0) & (core_f >= 0),
        small & (core_c < 0) & (core_f >= 0),
        small & (core_c >= 0) & (core_f < 0),
    )
    neither = small & (core_c < 0) & (core_f < 0)
    lines += [
        "",
        f"Small towns at these caps: {int(both.sum())} in a commuting and a freight agglomeration, "
        f"{int(only_f.sum())} only in a freight one ({pop[only_f].sum() / 1e3:.0f} k people), {int(only_c.sum())} only in a "
        f"commuting one, {int(neither.sum())} in neither. Largest only-freight towns: "
        + ", ".join(f"{names[i]} ({pop[i] / 1e3:.1f} k)" for i in np.argsort(-pop * only_f)[:6] if only_f[i])
        + ".",
        "",
        "**How much larger freight agglomerations are** (GeoNames; both caps raised together):",
        "",
    ]
    for cc, ff in ((30, 120), (60, 240), (90, 360)):
        lines += sizes(main_ds.sel({"commute.cap_min": cc, "freight.cap_min": ff}), f"{cc} / {ff} min")
        lines.append("")
    lines += [
        "**Decay** (coverage of small-town population):",
        "",
        "| caps | decay | commuting | freight |",
        "| --- | --- | --- | --- |",
    ]
    for k in range(decay.sizes["scenario"]):
        c, f = decay["coverage"].values[k]
        lines.append(
            f"| {decay['commute.cap_min'].values[k]:g} / {decay['freight.cap_min'].values[k]:g} min | "
            f"{decay['commute.decay'].values[k]} | {100 * c:.1f} % | {100 * f:.1f} % |"
        )
    lines += [
        "",
        "**A pandemic-style restriction** (INEGI localities, closed = no trip leaves its municipality; freight at 240 min):",
        "",
    ]
    lines += ["| commute cap | borders | commuting coverage | freight coverage |", "| --- | --- | --- | --- |"]
    for cap in restr["commute.cap_min"].values:
        for b in restr["borders"].values:
            c, f = restr["coverage"].sel({"commute.cap_min": cap, "borders": b}).values
            lines.append(f"| {cap:g} min | {b} | {100 * c:.1f} % | {100 * f:.1f} % |")
    lines += ["", "**Second source**: INEGI 2020 localities of 1 000+ people against GeoNames (500+):", ""]
    lines += [
        "| caps | GeoNames commuting | INEGI commuting | GeoNames freight | INEGI freight |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cc, ff in ((30, 120), (45, 180), (60, 240), (90, 360)):
        g = main_ds["coverage"].sel({"commute.cap_min": cc, "freight.cap_min": ff}).values
        i = inegi["coverage"].sel({"commute.cap_min": cc, "freight.cap_min": ff}).values
        lines.append(
            f"| {cc} / {ff} min | {100 * g[0]:.1f} % | {100 * i[0]:.1f} % | {100 * g[1]:.1f} % | {100 * i[1]:.1f} % |"
        )
    lines.append(f"\n(INEGI: {inegi.sizes['town']} localities; GeoNames: {main_ds.sizes['town']} places.)")
    print(write_results(HERE / "README.md", lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
