"""The studies' own preparation steps (the engine runs are covered elsewhere)."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(path: str):
    spec = importlib.util.spec_from_file_location("study", ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ural_table_joins_every_monotown_or_says_why():
    ural = _load("experiments/ural/run.py")
    table, unjoined = ural.build_table()
    mono = pd.read_csv(ROOT / "tests/data/ru_monotowns/monotowns_1398r.csv")
    mono = mono[mono["region"].isin(ural.REGIONS)]
    assert int((table["category"] > 0).sum()) + len(unjoined) == len(mono)
    assert sorted(table.loc[table["core"], "name"]) == sorted(ural.CENTRES)
    assert table["town_id"].is_unique and (table["population"] > 0).all()
    # Every joined monotown is in its own region, with the category of the list.
    for row in mono.itertuples(index=False):
        key = ural._key(row.admin_center)
        hit = table[(table["name"].map(ural._key) == key) & (table["region"] == ural.REGIONS[row.region])]
        assert len(hit) == 0 or int(hit["category"].iloc[0]) == int(row.category)


def test_cbsa_table_has_the_metropolitan_central_counties_as_cores():
    cbsa = _load("experiments/cbsa/run.py")
    table, truth = cbsa.build_table()
    assert table["town_id"].is_unique and table["core"].any()
    central = set(truth.loc[truth["central"], "GEOID"])
    assert set(table.loc[table["core"], "town_id"].map(lambda t: f"{t:05d}")) <= central
    assert (~truth["central"]).sum() > 400


def test_oaxaca_study_highlights_are_geonames_towns():
    from agglo.engine.data.towns import load_geonames

    oaxaca = _load("experiments/oaxaca/run.py")
    ids = set(load_geonames("MX", ["20"], 500).town_id.tolist())
    assert set(oaxaca.HIGHLIGHT) <= ids
    raw = pd.read_csv(ROOT / "tests/data/oaxaca/oaxaca_localidades_1000plus_2020.csv")
    assert set(oaxaca.INEGI_CORES) <= set(raw["cvegeo"].tolist())


def test_cbsa_held_out_halves_split_the_states():
    cbsa = _load("experiments/cbsa/run.py")
    table, _ = cbsa.build_table()
    a, b = cbsa.halves(table)
    assert not a & b and a | b == set(table["region"])
    assert abs(len(a) - len(b)) <= 1


def test_cbsa_places_fall_in_their_counties_and_every_county_has_towns():
    pytest.importorskip("bokeh_sampledata", reason="the `counties` extra (make installs it)")
    cbsa = _load("experiments/cbsa/run.py")
    from experiments.cbsa import places

    counties = cbsa.counties_table()
    # A point inside Denton County, TX; one in Hartford (Connecticut's 2020 list has planning
    # regions, not the old counties of the polygons: the nearest 2020 internal point decides).
    got = places.county_of_places(
        np.array([33.2148, 41.7658]), np.array([-97.1331, -72.6734]), np.array(["TX", "CT"]), counties
    )
    assert got[0] == "48121"
    assert got[1].startswith("09") and got[1] in set(counties["GEOID"])
    areas = places.delineation(ROOT)
    table = places.build_places(counties, areas)
    assert table["town_id"].is_unique and (table["population"] > 0).all()
    assert set(table["county"]) == set(counties["GEOID"])  # every county is in the run
    assert set(table.loc[table["core"], "county"]) == set(areas.loc[areas["central"], "GEOID"])
    rest = table[table["town_id"] >= places.REST_ID]
    assert (rest["county"].astype(np.int64) == rest["town_id"] - places.REST_ID).all()
    total = table.groupby("county")["population"].sum()
    assert (total.reindex(counties["GEOID"]).to_numpy() >= counties["Population"].to_numpy() - 1e-6).all()
