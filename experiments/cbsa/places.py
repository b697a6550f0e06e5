"""The CBSA benchmark at the place level (issue #14, point 1), called by run.py.

Towns are every GeoNames place of the US with 500+ people, each placed in its county by the
county polygons of ``bokeh-sampledata`` (Census TIGER/Line; the ``counties`` extra), plus one
town per county at its Gazetteer internal point for the county's population not in those
places (where there is any). A place in a county that the 2020 county list no longer has
(Connecticut's old counties, renamed Alaskan and South Dakotan ones) or in no polygon goes
to the nearest 2020 county internal point of its state. Cores are the towns of the central
counties of every CBSA of OMB 2023, metropolitan and micropolitan: OMB settles central counties
first, and a central county is no other area's outlying county, so a small micropolitan centre
keeps its own neighbours as it does in the delineation. After the run, every county is read at
the county level by :func:`agglo.analysis.aggregate_units`: its towns' population (or
their flows to their cores, ``weight``) is summed by the CBSA of the core they join (a CBSA's
central counties pool), and a county that is no CBSA's central county is predicted an outlying
county of the area with the largest sum when that sum is at least ``tau`` of its population;
only metropolitan areas are scored, as in run.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TAUS = (0.05, 0.1, 0.15, 0.25, 0.35, 0.5)
REST_ID = 10**10  # town_id of a county's remainder town: REST_ID + its FIPS (GeoNames ids are below 2^31)


def _nearest_in_state(lat, lon, state, counties: pd.DataFrame) -> str:
    from agglo.kernels.reach import haversine_km

    pool = counties[counties["State"] == state]
    if pool.empty:
        pool = counties
    km = [haversine_km(lat, lon, la, lo) for la, lo in zip(pool["Latitude"], pool["Longitude"])]
    return str(pool["GEOID"].to_numpy()[int(np.argmin(km))])


def county_of_places(lat, lon, state, counties: pd.DataFrame) -> np.ndarray:
    """The 2020 county (GEOID) of each point: the TIGER/Line polygon it lies in, else the
    nearest 2020 internal point of its state."""
    import shapely
    from bokeh_sampledata.us_counties import records

    recs = records()
    fips = np.array([r["fips"] for r in recs])
    tree = shapely.STRtree([r["geometry"] for r in recs])
    at_pt, at_geom = tree.query(shapely.points(lon, lat), predicate="within")
    out = np.full(len(lat), "", dtype=object)
    out[at_pt] = fips[at_geom]
    known = set(counties["GEOID"])
    for i in np.flatnonzero([g not in known for g in out]):
        out[i] = _nearest_in_state(lat[i], lon[i], state[i], counties)
    return out


def delineation(root) -> pd.DataFrame:
    """OMB 2023: GEOID, cbsa, metro (bool), central (bool) of every county in a CBSA."""
    omb = pd.read_csv(
        root / "tests/data/us_cbsa/list1_Jul_2023_cbsa_delineation.csv",
        dtype={"CBSA Code": str, "FIPS State Code": str, "FIPS County Code": str},
    )
    return pd.DataFrame(
        {
            "GEOID": omb["FIPS State Code"].str.zfill(2) + omb["FIPS County Code"].str.zfill(3),
            "cbsa": omb["CBSA Code"],
            "metro": omb["Metropolitan/Micropolitan Statistical Area"] == "Metropolitan Statistical Area",
            "central": omb["Central/Outlying County"] == "Central",
        }
    )


def build_places(counties: pd.DataFrame, areas: pd.DataFrame, parts: tuple | None = (3000.0, 2.0)) -> pd.DataFrame:
    """The engine's town table (docs/model.md's columns) plus ``county``: places and remainders.
    ``parts``: (density, ratio) of the rule that leaves out the places that are parts of a
    larger place (agglo/engine/data/parts.py, before the remainders are counted), None: keep them."""
    from agglo.engine.data.parts import part_of, without_parts
    from agglo.engine.data.towns import load_geonames

    towns = load_geonames("US", None, 500)
    if parts is not None:
        towns = without_parts(towns, part_of(towns, *parts))
    county = county_of_places(towns.lat, towns.lon, towns.region, counties)
    places = pd.DataFrame(
        {
            "town_id": towns.town_id.astype(np.int64),
            "name": towns.name,
            "lat": towns.lat,
            "lon": towns.lon,
            "population": towns.population.astype(float),
            "region": towns.region,
            "county": county,
        }
    )
    in_places = places.groupby("county")["population"].sum()
    c = counties.set_index("GEOID")
    rest = (c["Population"] - in_places.reindex(c.index).fillna(0.0)).clip(lower=0.0)
    rest = rest[rest > 0]
    remainder = pd.DataFrame(
        {
            "town_id": REST_ID + rest.index.astype(np.int64),
            "name": [f"rest of {n}" for n in c.loc[rest.index, "Name"]],
            "lat": c.loc[rest.index, "Latitude"].to_numpy(),
            "lon": c.loc[rest.index, "Longitude"].to_numpy(),
            "population": rest.to_numpy(dtype=float),
            "region": c.loc[rest.index, "State"].to_numpy(),
            "county": rest.index.to_numpy(),
        }
    )
    table = pd.concat([places, remainder], ignore_index=True)
    table["core"] = table["county"].isin(set(areas.loc[areas["central"], "GEOID"]))
    return table.sort_values("town_id", ignore_index=True)


def _by_county(ds, table: pd.DataFrame, areas: pd.DataFrame):
    """The cube's towns in ``table``'s rows, each town's county, and the target each stands for
    as a core: its county's CBSA (a CBSA's central counties pool), else the county itself."""
    by_id = table.set_index("town_id").loc[ds["town_id"].values]
    county = by_id["county"].to_numpy().astype(str)
    cbsa_of = dict(zip(areas["GEOID"], areas["cbsa"]))
    return by_id, county, np.array([cbsa_of.get(g, f"county {g}") for g in county])


def _predicted(joined, share, candidate, metro_areas: set, taus):
    """(tau, mask) for each tau: the counties predicted an outlying county of a metro area, a
    ``candidate`` (no CBSA's central county) that joins one with at least ``tau`` of its population."""
    in_metro = candidate & np.isin(joined, list(metro_areas))
    for tau in taus:
        yield tau, in_metro & (share >= tau)


def score_places(ds, table: pd.DataFrame, areas: pd.DataFrame, states: set | None = None) -> pd.DataFrame:
    """Precision, recall and F1 of metropolitan outlying-county membership per scenario,
    weight and tau, over the counties of ``states`` (all when None)."""
    from agglo.analysis import aggregate_units
    from experiments.common import precision_recall_f1

    by_id, county, target = _by_county(ds, table, areas)
    central = set(areas.loc[areas["central"], "GEOID"])
    metro_areas = set(areas.loc[areas["metro"], "cbsa"])
    outlying = {
        g: c for g, c, m, k in zip(areas["GEOID"], areas["cbsa"], areas["metro"], areas["central"]) if m and not k
    }
    region = by_id.groupby(county)["region"].first()
    rows = []
    for weight in ("population", "flows"):
        agg = aggregate_units(ds, county, target, weight=weight)
        units = agg["unit"].values.astype(str)
        keep = ~np.isin(units, list(central))
        if states is not None:
            keep &= np.isin(region.reindex(units).to_numpy(), list(states))
        true = np.array([outlying.get(u, "") for u in units], dtype=object)
        n_true = int(((true != "") & keep).sum())
        dims = [d for d in agg["target"].dims if d != "unit"]
        joined = agg["target"].transpose(*dims, "unit").values.reshape(-1, len(units))
        share = agg["target_share"].transpose(*dims, "unit").values.reshape(-1, len(units))
        index = agg["target"].stack(_key=dims)["_key"].values
        for k, key in enumerate(index):
            for tau, member in _predicted(joined[k], share[k], keep, metro_areas, TAUS):
                hit = member & (joined[k] == true)
                rows.append(
                    {
                        **dict(zip(dims, key)),
                        "weight": weight,
                        "tau": tau,
                        **precision_recall_f1(hit.sum(), member.sum(), n_true),
                    }
                )
    return pd.DataFrame(rows)


def held_out_places(ds, table: pd.DataFrame, areas: pd.DataFrame, halves: tuple[set, set]) -> pd.DataFrame:
    """Scenario, weight and tau chosen by F1 on one half of the states, scored on the other."""
    from experiments.common import held_out

    keys = [d for d in ds["core"].dims if d not in ("mode", "town")] + ["weight", "tau"]
    return held_out(lambda states: score_places(ds, table, areas, states), halves, keys)


def county_outcomes(one, table: pd.DataFrame, areas: pd.DataFrame, weight: str, tau: float) -> pd.DataFrame:
    """Per county of one scenario (``one``: the cube at one scenario): OMB's status, the metro
    area it is predicted to (or ""), and the outcome: right, wrong area, missed, extra (a
    county predicted that OMB leaves out of every metro area), or central."""
    from agglo.analysis import aggregate_units

    _, county, target = _by_county(one, table, areas)
    agg = aggregate_units(one, county, target, weight=weight)
    units = agg["unit"].values.astype(str)
    cbsa_of = dict(zip(areas["GEOID"], areas["cbsa"]))
    status = {
        g: ("metro " if m else "micro ") + ("central" if c else "outlying")
        for g, m, c in zip(areas["GEOID"], areas["metro"], areas["central"])
    }
    omb = np.array([status.get(u, "none") for u in units], dtype=object)
    candidate = np.array([not st.endswith("central") for st in omb])
    joined = agg["target"].values
    ((_, member),) = _predicted(
        joined, agg["target_share"].values, candidate, set(areas.loc[areas["metro"], "cbsa"]), (tau,)
    )
    rows = []
    for u, st, t, is_member in zip(units, omb, joined, member):
        pred = t if is_member else ""
        true = cbsa_of[u] if st == "metro outlying" else ""
        if st.endswith("central"):
            outcome = "central"
        elif true and pred == true:
            outcome = "right"
        elif true and pred:
            outcome = "wrong area"
        elif true:
            outcome = "missed"
        elif pred:
            outcome = "extra"
        else:
            outcome = "right (none)"
        rows.append({"GEOID": u, "omb": st, "predicted": pred, "outcome": outcome})
    return pd.DataFrame(rows)
