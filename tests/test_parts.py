"""Places that are parts of a larger place (docs/model.md, "Towns"): the rule against a plain
dense twin written from the specification, on Hypothesis towns and on every place of Poland;
what a run does with it (auto for GeoNames only, off keeps every place, a forced core stays)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.data.parts import part_of
from agglo.engine.data.towns import Towns, load_geonames
from tests.naive import haversine_rows
from tests.strategies import town_tables


def twin_part_of(towns: Towns, density: float, ratio: float, keep=None) -> np.ndarray:
    """docs/model.md's rule, dense: parents largest first (ties by row), each takes its
    candidates nearest first (ties by row) while their people do not outnumber its own."""
    n = len(towns)
    pop = towns.population.astype(np.float64)
    keep = np.zeros(n, dtype=bool) if keep is None else keep
    d = haversine_rows(towns.lat, towns.lon, np.arange(n))
    region = towns.region_code
    parent = np.full(n, -1)
    has_parts = np.zeros(n, dtype=bool)
    for i in sorted(range(n), key=lambda k: (-pop[k], k)):
        if parent[i] >= 0:
            continue
        r = np.sqrt(pop[i] / (np.pi * density))
        ok = (parent < 0) & ~has_parts & ~keep & (region == region[i]) & (ratio * pop <= pop[i]) & (d[i] <= r)
        ok[i] = False
        total = 0.0
        for j in sorted(np.flatnonzero(ok), key=lambda k: (d[i, k], k)):
            total += pop[j]
            if total > pop[i]:
                break
            parent[j] = i
            has_parts[i] = True
    return parent


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    towns=town_tables(max_towns=40),
    density=st.sampled_from([50.0, 300.0, 3000.0]),
    ratio=st.sampled_from([1.0, 2.0, 5.0]),
    forced=st.integers(0, 2**40),
)
def test_the_rule_equals_its_twin(towns, density, ratio, forced):
    keep = (np.arange(len(towns)) * 7919 + forced) % 5 == 0
    got = part_of(towns, density, ratio, keep=keep)
    np.testing.assert_array_equal(got, twin_part_of(towns, density, ratio, keep))
    parts = got >= 0
    assert not (parts & keep).any()
    assert (got[parts] != np.flatnonzero(parts)).all() and (got[got[parts]] < 0).all()  # a part has no parts
    for i in np.unique(got[parts]):
        assert towns.population[got == i].sum() <= towns.population[i]


def test_every_place_of_poland_equals_the_twin():
    towns = load_geonames("PL", None, 500)
    got = part_of(towns, 3000.0, 2.0)
    np.testing.assert_array_equal(got, twin_part_of(towns, 3000.0, 2.0))
    names = towns.name
    warsaw = int(np.flatnonzero(names == "Warsaw")[0])
    for district in ("Mokotów", "Praga Południe", "Śródmieście", "Ursynów"):
        assert (got[names == district] == warsaw).any(), district
    for town in ("Pruszków", "Piaseczno", "Chorzów", "Sosnowiec"):  # towns of their own beside larger ones
        assert (got[names == town] < 0).all(), town


def test_a_run_leaves_parts_out_of_geonames_only(tmp_path, run_cli):
    base = [
        "data.country=PL",
        "data.admin1=78",
        "data.min_population=20000",
        "sweep.grid={}",
        "executor.kind=synchronous",
    ]
    code, _, err = run_cli("run", *base, f"store.path={tmp_path / 'on.zarr'}")
    assert code == 0, err
    line = next(x for x in err.splitlines() if "parts of a larger place" in x)
    assert "Mokotów (of Warsaw)" in line and "data.parts=off keeps them" in line
    code, _, err = run_cli("run", *base, "data.parts=off", f"store.path={tmp_path / 'off.zarr'}")
    assert code == 0 and "parts of a larger place" not in err
    import agglo

    on, off = agglo.open_results(str(tmp_path / "on.zarr")), agglo.open_results(str(tmp_path / "off.zarr"))
    kept = set(on["name"].values)
    assert "Mokotów" not in kept and "Warsaw" in kept and "Mokotów" in set(off["name"].values)
    assert len(off["town"]) - len(on["town"]) == int(line.split(": ")[1].split(" place")[0])
    # A forced core is never a part; a table keeps every row unless data.parts=on.
    wola = int(off["town_id"].values[list(off["name"].values).index("Wola")])
    code, _, err = run_cli("run", *base, f"cores.ids=[{wola}]", f"store.path={tmp_path / 'forced.zarr'}")
    assert code == 0, err
    assert "Wola" in set(agglo.open_results(str(tmp_path / "forced.zarr"))["name"].values)
    table = tmp_path / "towns.csv"
    frame = off[["town_id", "name", "lat", "lon", "population", "region"]].to_dataframe().reset_index(drop=True)
    frame.to_csv(table, index=False)
    for parts, expect in (("auto", len(off["town"])), ("on", len(on["town"]))):
        store = tmp_path / f"table_{parts}.zarr"
        tab = ["data.source=table", f"data.path={table}", "data.min_population=0", f"data.parts={parts}"]
        code, _, err = run_cli("run", *tab, "sweep.grid={}", "executor.kind=synchronous", f"store.path={store}")
        assert code == 0, err
        assert len(agglo.open_results(str(store))["town"]) == expect, parts


def test_bad_parts_keys_are_refused_in_one_line(tmp_path, run_cli):
    for key, value, allowed in (
        ("data.parts", "maybe", "auto, on, off"),
        ("data.parts_density", "0", "> 0"),
        ("data.parts_ratio", "0.5", ">= 1"),
    ):
        code, _, err = run_cli("run", f"{key}={value}", f"store.path={tmp_path / 'x.zarr'}")
        assert code == 2 and key in err and allowed in err and "\n" not in err.strip(), err
        assert not (tmp_path / "x.zarr").exists()
