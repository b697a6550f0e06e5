"""The Ural monotowns study, one command from the repository root:

    .venv/bin/python experiments/ural/run.py

1. Builds ``experiments/ural/ural_towns.csv``: every town of Sverdlovsk and Chelyabinsk
   oblasts (tests/data/ru_towns, Rosstat 2020), with Yekaterinburg, Chelyabinsk,
   Magnitogorsk and Nizhny Tagil as cores, and joins the monotown list (order 1398-r,
   tests/data/ru_monotowns) by administrative centre and region (settlement prefix
   stripped, ё read as е); what does not join is listed with the reason.
2. Runs ``agglo run experiment=ural --figures results/ural_figures`` (commute cap x
   freight cap), the engine's cube in results/ural.zarr; the map and heatmap are copied here.
3. Writes the results tables into this folder's README (between the RESULTS markers).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.common import agglo_run, write_results  # noqa: E402

HERE = Path(__file__).resolve().parent
REGIONS = {"Свердловская область": "RU-SVE", "Челябинская область": "RU-CHE"}
CENTRES = ["Екатеринбург", "Челябинск", "Магнитогорск", "Нижний Тагил"]
CATEGORY = {1: "1 difficult", 2: "2 at risk", 3: "3 stable", 0: "not a monotown"}


def _key(name: str) -> str:
    return re.sub(r"^(г|пгт|п|с|рп|дп)\.\s*", "", str(name)).replace("ё", "е").replace("Ё", "Е").strip()


def build_table() -> tuple[pd.DataFrame, list[str]]:
    towns = pd.read_csv(ROOT / "tests/data/ru_towns/towns.csv")
    towns = towns[towns["region_name"].isin(REGIONS)].reset_index(drop=True)
    mono = pd.read_csv(ROOT / "tests/data/ru_monotowns/monotowns_1398r.csv")
    mono = mono[mono["region"].isin(REGIONS)]
    towns["key"] = towns["city"].map(_key)
    towns["category"] = 0
    unjoined = []
    for row in mono.itertuples(index=False):
        key = _key(row.admin_center)
        hit = towns.index[(towns["key"] == key) & (towns["region_name"] == row.region)]
        if len(hit) == 1:
            towns.loc[hit[0], "category"] = int(row.category)
        else:
            kind = str(row.admin_center).split(".")[0]
            why = (
                "not a town in the Rosstat list (a settlement)"
                if kind in ("п", "пгт", "с", "рп")
                else "no town of that name"
            )
            unjoined.append(f"{row.admin_center} ({row.region}, category {int(row.category)}): {why}")
    table = pd.DataFrame(
        {
            "town_id": towns["oktmo"].astype("int64"),
            "name": towns["city"],
            "lat": towns["lat"],
            "lon": towns["lon"],
            "population": towns["population"] * 1000.0,
            "region": towns["region_name"].map(REGIONS),
            "core": towns["city"].isin(CENTRES),
            "category": towns["category"],
        }
    )
    return table, unjoined


def results(table: pd.DataFrame) -> str:
    import agglo

    ds = agglo.open_results(str(ROOT / "results/ural.zarr"))
    cat = table.set_index("town_id").loc[ds["town_id"].values, "category"].to_numpy()
    pop = ds["population"].values
    core = ds["core"]
    lines = ["Default scenario (commute 60 min, freight 240 min): towns attached to one of the four centres", ""]
    lines.append("| monotown category | towns | population | by commuting | by freight | only by freight |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    one = core.sel({"commute.cap_min": 60, "freight.cap_min": 240})
    is_core = table.set_index("town_id").loc[ds["town_id"].values, "core"].to_numpy()
    c = one.sel(mode="commute").values >= 0
    f = one.sel(mode="freight").values >= 0
    for k in (1, 2, 3, 0):
        m = (cat == k) & ~is_core
        lines.append(
            f"| {CATEGORY[k]} | {int(m.sum())} | {pop[m].sum() / 1e3:.0f} k | {int((c & m).sum())} ({100 * pop[c & m].sum() / max(pop[m].sum(), 1):.0f} %) "
            f"| {int((f & m).sum())} ({100 * pop[f & m].sum() / max(pop[m].sum(), 1):.0f} %) | {int((f & ~c & m).sum())} |"
        )
    lines += ["", "Share of monotown population (categories 1-3) in an agglomeration, by cap:", ""]
    caps_c = ds["commute.cap_min"].values
    caps_f = ds["freight.cap_min"].values
    mono = (cat > 0) & ~is_core
    lines.append("| commute cap | by commuting | freight cap | by freight |")
    lines.append("| --- | --- | --- | --- |")
    for cc, ff in zip(caps_c, caps_f):
        a = core.sel({"commute.cap_min": cc, "freight.cap_min": ff, "mode": "commute"}).values >= 0
        b = core.sel({"commute.cap_min": cc, "freight.cap_min": ff, "mode": "freight"}).values >= 0
        lines.append(
            f"| {cc:g} min | {100 * pop[a & mono].sum() / pop[mono].sum():.1f} % | {ff:g} min | {100 * pop[b & mono].sum() / pop[mono].sum():.1f} % |"
        )
    return "\n".join(lines)


def by_category(ds, table, select: dict) -> dict:
    """Share of each category's population (centres excluded) attached, per mode."""
    ids = ds["town_id"].values
    cat = table.set_index("town_id").loc[ids, "category"].to_numpy()
    core_town = table.set_index("town_id").loc[ids, "core"].to_numpy()
    pop = ds["population"].values
    out = {}
    for mode in ("commute", "freight"):
        attached = ds["core"].sel(select).sel(mode=mode).values >= 0
        out[mode] = [
            100 * pop[attached & (cat == k) & ~core_town].sum() / pop[(cat == k) & ~core_town].sum() for k in (1, 2, 3)
        ]
    return out


def extra_questions(table) -> list[str]:
    """Decay and a lockdown (commute 0-30 min, closed oblast borders), by monotown category."""
    import agglo

    oaxaca = ROOT / "experiments/oaxaca/decay_scenarios.csv"
    for args in (
        ["sweep.grid={}", f"sweep.table={oaxaca}", "store.path=results/ural_decay.zarr"],
        ["sweep.grid={}", "commute.cap_min=0,10,20,30", "borders=open,closed", "store.path=results/ural_lockdown.zarr"],
    ):
        agglo_run("experiment=ural", *args)
    decay = agglo.open_results(str(ROOT / "results/ural_decay.zarr"))
    lock = agglo.open_results(str(ROOT / "results/ural_lockdown.zarr"))
    lines = ["", "Decay: share of each category's population attached (categories 1 / 2 / 3):", ""]
    lines += ["| caps | decay | by commuting | by freight |", "| --- | --- | --- | --- |"]
    for k in range(decay.sizes["scenario"]):
        got = by_category(decay, table, {"scenario": k})
        lines.append(
            f"| {decay['commute.cap_min'].values[k]:g} / {decay['freight.cap_min'].values[k]:g} min | {decay['commute.decay'].values[k]} "
            f"| {' / '.join(f'{v:.0f} %' for v in got['commute'])} | {' / '.join(f'{v:.0f} %' for v in got['freight'])} |"
        )
    lines += [
        "",
        "Lockdown (freight at 240 min; closed = no trip crosses the oblast border), categories 1 / 2 / 3:",
        "",
    ]
    lines += ["| commute cap | borders | by commuting | by freight |", "| --- | --- | --- | --- |"]
    for cap in lock["commute.cap_min"].values:
        for b in lock["borders"].values:
            got = by_category(lock, table, {"commute.cap_min": cap, "borders": b})
            lines.append(
                f"| {cap:g} min | {b} | {' / '.join(f'{v:.0f} %' for v in got['commute'])} | {' / '.join(f'{v:.0f} %' for v in got['freight'])} |"
            )
    return lines


def main() -> int:
    table, unjoined = build_table()
    table.drop(columns=["category"]).to_csv(HERE / "ural_towns.csv", index=False)
    (HERE / "monotown_categories.csv").write_text(table[["town_id", "name", "category"]].to_csv(index=False))
    figures = ROOT / "results/ural_figures"
    agglo_run("experiment=ural", figures=str(figures))
    (HERE / "figures").mkdir(exist_ok=True)
    for name in ("map.png", "heatmap_coverage.png"):  # the two the README shows; the rest stay in results/
        shutil.copyfile(figures / name, HERE / "figures" / name)
    text = "\n".join([results(table), *extra_questions(table)])
    joined = int((table["category"] > 0).sum())
    report = [
        f"{len(table)} towns, {int(table['core'].sum())} centres; monotowns of the two oblasts in order 1398-r: "
        f"{joined + len(unjoined)}, joined {joined}, not joined {len(unjoined)}:",
        "",
        *[f"- {u}" for u in unjoined],
        "",
        text,
    ]
    print(write_results(HERE / "README.md", report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
