"""The studies' own preparation steps (the engine runs are covered elsewhere)."""

import importlib.util
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

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
    from agglo.engine.towns import load_geonames

    oaxaca = _load("experiments/oaxaca/run.py")
    ids = set(load_geonames("MX", ["20"], 500).town_id.tolist())
    assert set(oaxaca.HIGHLIGHT) <= ids
    raw = pd.read_csv(ROOT / "tests/data/oaxaca/oaxaca_localidades_1000plus_2020.csv")
    assert set(oaxaca.INEGI_CORES) <= set(raw["cvegeo"].tolist())


def _rand_by_pairs(a, b) -> float:
    """The adjusted Rand index from the four pair counts (Hubert and Arabie), every pair visited."""
    n = len(a)
    same_both = same_a = same_b = diff_both = 0
    for i in range(n):
        for j in range(i + 1, n):
            sa, sb = a[i] == a[j], b[i] == b[j]
            same_both += sa and sb
            same_a += sa and not sb
            same_b += sb and not sa
            diff_both += not sa and not sb
    num = 2.0 * (same_both * diff_both - same_a * same_b)
    den = (same_both + same_a) * (same_a + diff_both) + (same_both + same_b) * (same_b + diff_both)
    return 1.0 if den == 0 else num / den


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 6)), min_size=2, max_size=40))
def test_adjusted_rand_index_equals_the_pair_count_formula(labels):
    from experiments.common import adjusted_rand_index

    a, b = [x for x, _ in labels], [y for _, y in labels]
    assert abs(adjusted_rand_index(a, b) - _rand_by_pairs(a, b)) < 1e-12


def test_adjusted_rand_index_known_values():
    from experiments.common import adjusted_rand_index

    # Hubert and Arabie's index as scikit-learn's documentation gives it for this pair.
    assert abs(adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) - 0.24242424242424243) < 1e-12
    assert adjusted_rand_index(["x", "x", "y"], [5, 5, 7]) == 1.0  # the same partition, any labels


def test_cbsa_held_out_halves_split_the_states():
    cbsa = _load("experiments/cbsa/run.py")
    table, _ = cbsa.build_table()
    a, b = cbsa.halves(table)
    assert not a & b and a | b == set(table["region"])
    assert abs(len(a) - len(b)) <= 1
