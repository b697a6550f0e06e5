"""An official benchmark, one command from the repository root:

    .venv/bin/python experiments/cbsa/run.py

US counties (tests/data/us_cbsa: 2020 Gazetteer points, ACS 2022 populations) are the towns;
the central counties of metropolitan statistical areas in OMB's July 2023 delineation are
the cores. For every scenario of ``experiment=cbsa`` (commute cap x beta x threshold) a
non-core county is predicted an outlying county of the metro area whose central county it
joins. Against OMB 2023: precision (predicted outlying counties that OMB puts in that same
metro area) and recall (OMB's metropolitan outlying counties found, in the right area).
Against the 1990 commuting zones (tests/data/us_commuting_zones): the share of predicted
attachments whose county and core share a zone. Tables go into this folder's README.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from agglo.analysis import adjusted_rand  # noqa: E402
from experiments.cbsa import places as P  # noqa: E402
from experiments.common import agglo_run, precision_recall_f1, write_results  # noqa: E402
from experiments.common import held_out as common_held_out  # noqa: E402

HERE = Path(__file__).resolve().parent
KEYS = ["commute.cap_min", "commute.beta", "commute.threshold"]


def build_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    counties = counties_table()
    areas = P.delineation(ROOT)
    truth = areas.loc[areas["metro"], ["GEOID", "cbsa", "central"]]
    table = pd.DataFrame(
        {
            "town_id": counties["GEOID"].astype(np.int64),
            "name": counties["Name"] + ", " + counties["State"],
            "lat": counties["Latitude"],
            "lon": counties["Longitude"],
            "population": counties["Population"].astype(float),
            "region": counties["State"],
            "core": counties["GEOID"].isin(truth.loc[truth["central"], "GEOID"]),
        }
    )
    return table, truth


def halves(table: pd.DataFrame) -> tuple[set, set]:
    """The states split in two for held-out validation: alphabetical, alternately."""
    states = sorted(table["region"].unique())
    return set(states[0::2]), set(states[1::2])


def score(ds, table: pd.DataFrame, truth: pd.DataFrame, zones: pd.Series, states: set | None = None) -> pd.DataFrame:
    """Precision, recall and F1 of outlying-county membership per scenario, over the counties
    of ``states`` (all when None); same_cz_1990 and the adjusted Rand index against the 1990
    commuting zones (each agglomeration one cluster, a county in none a cluster of its own)."""
    ids = ds["town_id"].values
    geoid = np.array([f"{int(t):05d}" for t in ids])
    cbsa_of = dict(zip(truth["GEOID"], truth["cbsa"]))
    outlying = {g for g, c in zip(truth["GEOID"], truth["central"]) if not c}
    indexed = table.set_index("town_id").loc[ids]
    keep = np.ones(len(ids), dtype=bool) if states is None else indexed["region"].isin(states).to_numpy()
    true_area = np.array([cbsa_of.get(g) if g in outlying else None for g in geoid], dtype=object)
    area = np.array([cbsa_of.get(g) for g in geoid], dtype=object)  # the CBSA of each core
    zone = np.array([zones.get(g) for g in geoid], dtype=object)
    has_zone = keep & np.array([z is not None for z in zone])
    zone_code = np.unique(zone.astype(str), return_inverse=True)[1]  # -1 in core: a cluster of its own
    is_core = indexed["core"].to_numpy()
    flat = ds["core"].sel(mode="commute").stack(scenario=KEYS).transpose("scenario", "town").values
    rows = []
    is_true = keep & np.array([a is not None for a in true_area])
    n_true = int(is_true.sum())
    index = ds["core"].sel(mode="commute").stack(scenario=KEYS)["scenario"].values
    for k, key in enumerate(index):
        core = flat[k]
        member = (core >= 0) & ~is_core & keep
        pred_area = np.where(member, area[np.where(core >= 0, core, 0)], None)
        hit = member & (pred_area == true_area) & is_true
        same_zone = member & (zone == zone[np.where(core >= 0, core, 0)]) & has_zone
        rows.append(
            {
                **dict(zip(KEYS, key)),
                **precision_recall_f1(hit.sum(), member.sum(), n_true),
                "same_cz_1990": same_zone.sum() / max(member.sum(), 1),
                "ari_cz_1990": adjusted_rand(core[has_zone], zone_code[has_zone]),
            }
        )
    return pd.DataFrame(rows)


def held_out(ds, table: pd.DataFrame, truth: pd.DataFrame, zones: pd.Series) -> pd.DataFrame:
    """Parameters chosen by F1 on one half of the states, scored on the other half (and the
    reverse), beside the chosen scenario's in-sample F1."""
    return common_held_out(lambda states: score(ds, table, truth, zones, states), halves(table), KEYS)


def misses(ds, table, truth, best: dict) -> list[str]:
    """The largest OMB outlying counties the best scenario gets wrong, and how."""
    ids = ds["town_id"].values
    geoid = np.array([f"{int(t):05d}" for t in ids])
    core = ds["core"].sel(mode="commute").sel(best).values
    cbsa_of = dict(zip(truth["GEOID"], truth["cbsa"]))
    names = ds["name"].values
    pop = ds["population"].values
    out = []
    wrong = []
    for i, g in enumerate(geoid):
        if g in cbsa_of and not truth.set_index("GEOID").loc[g, "central"]:
            c = core[i]
            if c < 0:
                wrong.append((pop[i], f"{names[i]} (OMB: outlying of {cbsa_of[g]}): joins no central county"))
            elif cbsa_of.get(geoid[c]) != cbsa_of[g]:
                wrong.append((pop[i], f"{names[i]} (OMB: {cbsa_of[g]}): joins {names[c]} ({cbsa_of.get(geoid[c])})"))
    for _, text in sorted(wrong, reverse=True)[:8]:
        out.append(f"- {text}")
    return out


def main() -> int:
    table, truth = build_table()
    table.to_csv(HERE / "counties.csv", index=False)
    figures = ROOT / "results/cbsa_figures"
    agglo_run("experiment=cbsa", figures=str(figures))
    import agglo

    ds = agglo.open_results(str(ROOT / "results/cbsa.zarr"))
    cz = pd.read_csv(ROOT / "tests/data/us_commuting_zones/clusfin_jtw1990.csv", dtype={"county": str})
    zones = pd.Series(cz["cluster"].values, index=cz["county"].str.zfill(5))
    scores = score(ds, table, truth, zones).sort_values("f1", ascending=False)
    best = scores.iloc[0]
    best_sel = {k: best[k] for k in KEYS}
    (HERE / "figures").mkdir(exist_ok=True)
    shutil.copyfile(figures / "map.png", HERE / "figures" / "map.png")
    n_true = int((~truth["central"]).sum())
    fmt = scores.head(8).to_string(index=False, float_format=lambda v: f"{v:.3f}")
    validation = held_out(ds, table, truth, zones).to_string(index=False, float_format=lambda v: f"{v:.3f}")
    a, b = halves(table)
    report = [
        f"{len(table)} counties, {int(table['core'].sum())} central counties of metropolitan areas as cores, "
        f"{n_true} metropolitan outlying counties in OMB 2023; {len(scores)} scenarios.",
        "",
        "Best scenarios by F1 (precision and recall of outlying-county membership; same_cz_1990 = share of",
        "predicted attachments whose county and central county share a 1990 commuting zone; ari_cz_1990 =",
        "adjusted Rand index of the agglomerations, a county in none on its own, against the 1990 zones):",
        "",
        "```",
        fmt,
        "```",
        "",
        f"Best: {', '.join(f'{k} = {best[k]:g}' for k in KEYS)}: precision {best['precision']:.3f}, recall "
        f"{best['recall']:.3f}. The largest OMB outlying counties it gets wrong:",
        "",
        *misses(ds, table, truth, best_sel),
        "",
        "Held out: the states, DC and the territories by postal code, alternately in half A "
        f"({', '.join(sorted(a)[:4])}, ...) and half B ({', '.join(sorted(b)[:4])}, ...); the scenario with the best F1 "
        "on one half, scored on the other:",
        "",
        "```",
        validation,
        "```",
        "",
        *place_level(counties_table(), (a, b)),
    ]
    print(write_results(HERE / "README.md", report))
    return 0


def counties_table() -> pd.DataFrame:
    counties = pd.read_csv(ROOT / "tests/data/us_cbsa/counties_2020_dist.csv", dtype={"GEOID": str, "CBSA": str})
    return counties[counties["Population"] > 0]


def place_level(counties: pd.DataFrame, split: tuple[set, set]) -> list[str]:
    """Issue #14 point 1: the places run (experiment=cbsa_places), read back by county."""
    import agglo

    areas = P.delineation(ROOT)
    table = P.build_places(counties, areas)
    table.drop(columns=["county"]).to_csv(HERE / "places.csv", index=False)
    path = agglo_run("experiment=cbsa_places", "store.mode=overwrite")
    ds = agglo.open_results(str(ROOT / path))
    scores = P.score_places(ds, table, areas).sort_values("f1", ascending=False, kind="stable")
    dims = [c for c in scores.columns if c.startswith("commute.")]
    best = scores.iloc[0]
    one = ds.sel({k: best[k] for k in dims})
    outcomes = P.county_outcomes(one, table, areas, best["weight"], float(best["tau"]))
    outcomes = outcomes.merge(counties[["GEOID", "Latitude", "Longitude", "Population"]], on="GEOID")
    figure = HERE / "figures" / "places_counties.png"
    plot_outcomes(outcomes, figure)
    counts = outcomes["outcome"].value_counts()
    extra = outcomes[outcomes["outcome"] == "extra"]["omb"].value_counts()
    missed = outcomes[outcomes["outcome"] == "missed"].sort_values("Population", ascending=False)
    names = counties.set_index("GEOID")["Name"] + ", " + counties.set_index("GEOID")["State"]
    fmt = lambda df: df.to_string(index=False, float_format=lambda v: f"{v:.3f}")  # noqa: E731
    return [
        f"Place level: {len(table)} towns ({int((table['town_id'] < P.REST_ID).sum())} GeoNames places of 500+ people and "
        f"{int((table['town_id'] >= P.REST_ID).sum())} county remainders), {int(table['core'].sum())} of them in the "
        f"central counties of OMB's {areas['cbsa'].nunique()} CBSAs (metropolitan and micropolitan) as cores; "
        f"{len(ds['town_id'])} towns x {int(np.prod([ds.sizes[d] for d in dims]))} scenarios, read by county with "
        "weight (places' population or their flows to the core) and tau (the least share of the county joined).",
        "",
        "Best scenarios by F1 (metropolitan outlying counties, all states):",
        "",
        "```",
        fmt(scores.head(8)),
        "```",
        "",
        "Held out, the same halves as above:",
        "",
        "```",
        fmt(P.held_out_places(ds, table, areas, split)),
        "```",
        "",
        f"The best scenario county by county ({', '.join(f'{k} = {best[k]:g}' for k in dims)}, weight "
        f"{best['weight']}, tau {best['tau']:g}): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + ". The extra counties are, in OMB 2023: "
        + ", ".join(f"{k} {v}" for k, v in extra.items())
        + ". The largest missed: "
        + "; ".join(names.get(g, g) for g in missed["GEOID"].head(6))
        + ".",
        "",
        "![Counties right and wrong at the place level](figures/places_counties.png)",
    ]


def plot_outcomes(outcomes: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "right": "#1a9641",
        "wrong area": "#fdae61",
        "missed": "#d7191c",
        "extra": "#7b3294",
        "central": "#404040",
        "right (none)": "#d9d9d9",
    }
    fig, ax = plt.subplots(figsize=(11, 6.5), dpi=110)
    lower48 = outcomes[(outcomes["Longitude"] > -126) & (outcomes["Latitude"] > 24) & (outcomes["Latitude"] < 50)]
    for outcome, colour in colours.items():
        part = lower48[lower48["outcome"] == outcome]
        size = 4 if outcome == "right (none)" else 10
        ax.scatter(part["Longitude"], part["Latitude"], s=size, c=colour, label=f"{outcome} ({len(part)})", lw=0)
    ax.set_aspect(1.25)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title("OMB 2023 metropolitan outlying counties from place-level gravity (lower 48)")
    ax.legend(loc="lower left", fontsize=8, markerscale=1.5)
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
