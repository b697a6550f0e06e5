"""Travel-time tables (docs/traveltimes.md): every flow model on the user's own minutes,
symmetric or not, against the dense NumPy twin extended to tables (tests/naive.py); the
round trip through ``agglo times``; caps swept over a table; every bad table refused in one
line with nothing written."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.data.towns import Towns, from_frame
from tests.naive import haversine_rows, scenario, scenario_dense
from tests.strategies import compare, kernels_one, make_config, modes, town_tables

MODELS = ["gravity", "attraction", "doubly", "radiation"]


def dense_table(towns: Towns, draw_factor, keep, symmetric: bool) -> np.ndarray:
    """A dense table (inf: not listed): the straight line at 50 km/h times a factor per pair."""
    n = len(towns)
    base = 60 * haversine_rows(towns.lat, towns.lon, np.arange(n)) / 50.0
    m = base * draw_factor
    m[~keep] = np.inf
    if symmetric:
        m = np.minimum(m, m.T)
    np.fill_diagonal(m, np.inf)
    return m


def write(path, towns: Towns, m: np.ndarray) -> str:
    origin, dest = np.nonzero(np.isfinite(m))
    frame = pd.DataFrame(
        {"origin": towns.town_id[origin], "destination": towns.town_id[dest], "minutes": m[origin, dest]}
    )
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, float_format="%.17g")
    return str(path)


def check(towns, cfg, minutes: dict) -> dict:
    """The kernels against the twin for both modes; ``minutes`` maps a mode to its dense table."""
    out = kernels_one(towns, cfg)
    is_core = (towns.population >= cfg.cores.min_population) | towns.core
    for m, mode in enumerate(("commute", "freight")):
        mc = vars(cfg.mode(mode))
        twin = scenario if mc["model"] == "gravity" else scenario_dense
        ref = twin(
            towns.lat,
            towns.lon,
            towns.population,
            towns.region_code,
            is_core,
            mc,
            cfg.borders == "closed",
            minutes=minutes.get(mode),
        )
        if mc["model"] == "doubly":
            if not ref["ipf_error"] < 1e-9:  # no balanced table within 1000 rounds: both must say so
                assert not out["ipf_error"][m] < 1e-9
                continue
            assert out["ipf_error"][m] < 1e-9
            assert abs(int(out["ipf_iterations"][m]) - ref["ipf_iterations"]) <= max(2, ref["ipf_iterations"] // 10)
        compare(out, ref, m, cfg.mode(mode))
    return out


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    towns=town_tables(max_towns=30),
    mode=modes(),
    model=st.sampled_from(MODELS),
    symmetric=st.booleans(),
    seed=st.integers(0, 2**16),
    listed=st.sampled_from([1.0, 0.7, 0.2]),
    factor=st.sampled_from([1.0, 0.8, 1.25]),
    closed=st.booleans(),
    core_min=st.sampled_from([0.0, 20000.0]),
)
def test_every_model_on_a_table_equals_the_twin(
    tmp_path, towns, mode, model, symmetric, seed, listed, factor, closed, core_min
):
    rng = np.random.default_rng(seed)
    n = len(towns)
    keep = rng.random((n, n)) < listed
    keep[0, -1] = True  # at least one pair (a run of several towns refuses a table with none)
    m = dense_table(towns, rng.uniform(0.7, 2.0, (n, n)), keep, symmetric)
    freight = dict(mode, model=model, travel_times=write(tmp_path / f"t{seed}.parquet", towns, m), time_factor=factor)
    commute = dict(mode, model="gravity")
    cfg = make_config(commute, freight, "closed" if closed else "open", core_min)
    check(towns, cfg, {"freight": m})


def oaxaca() -> Towns:
    from agglo.engine.data.towns import load_geonames

    return load_geonames("MX", ["20"], 500)


@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow) if m != "doubly" else m for m in MODELS])
def test_an_asymmetric_table_of_real_towns_equals_the_twin(tmp_path, model):
    """All of Oaxaca's towns, a table whose uphill direction is slower (minutes grow with the
    destination's latitude): every model against the twin."""
    from agglo.engine.config.schema import AggloConfig

    towns = oaxaca()
    n = len(towns)
    uphill = np.clip(1.0 + 0.5 * (towns.lat[None, :] - towns.lat[:, None]), 0.7, 1.6)
    m = dense_table(towns, 1.3 * uphill, np.ones((n, n), dtype=bool), symmetric=False)
    base = AggloConfig()
    freight = dict(vars(base.freight), model=model, travel_times=write(tmp_path / "t.parquet", towns, m))
    out = check(towns, make_config(dict(vars(base.commute)), freight), {"freight": m})
    assert (out["n_reachable"][1] > 0).mean() > 0.9


@pytest.mark.slow
def test_one_pair_made_slower_or_removed_changes_the_towns_it_should(tmp_path):
    """Oaxaca's straight-line times as a table; then the pair joining a town to its core made
    slower than the cap, then removed: that town (and only what its flow feeds) changes, as
    the twin says, and n_reachable drops by one for that origin alone."""
    from agglo.engine.config.schema import AggloConfig

    towns = oaxaca()
    n = len(towns)
    base = AggloConfig()
    m = dense_table(towns, np.full((n, n), 1.3), np.ones((n, n), dtype=bool), symmetric=True)
    freight = dict(vars(base.freight), travel_times=write(tmp_path / "a.parquet", towns, m))
    before = check(towns, make_config(dict(vars(base.commute)), freight), {"freight": m})
    core = before["core"][1]
    joined = np.flatnonzero((core >= 0) & (core != np.arange(n)))
    i = int(joined[np.argmax(before["share"][1][joined])])  # the surest member
    j = int(core[i])
    for label, value in (("slower", 1e4), ("removed", np.inf)):
        edited = m.copy()
        edited[i, j] = value
        freight = dict(vars(base.freight), travel_times=write(tmp_path / f"{label}.csv", towns, edited))
        after = check(towns, make_config(dict(vars(base.commute)), freight), {"freight": edited})
        assert after["core"][1][i] != j, label
        assert after["n_reachable"][1][i] == before["n_reachable"][1][i] - 1
        others = np.arange(n) != i
        assert np.array_equal(after["n_reachable"][1][others], before["n_reachable"][1][others])
        assert np.array_equal(after["core"][1][others], before["core"][1][others])
        assert after["inflow"][1][j] < before["inflow"][1][j]
        assert np.array_equal(after["core"][0], before["core"][0])  # commuting keeps its straight lines
        np.testing.assert_allclose(after["share"][0], before["share"][0], rtol=1e-6)


SMALL = ["experiment=synthetic", "data.n=150", "executor.kind=synchronous", "cores.min_population=5000", "--quiet"]
EXACT = ("core", "n_reachable", "agglo_population", "coverage", "n_agglomerations")


def cube(path) -> dict:
    from tests.conftest import cube_arrays

    return cube_arrays(path)


def test_the_engines_own_times_fed_back_give_its_cube(tmp_path, run_cli):
    """``agglo times`` for both modes, fed back: every decided result (reach, cores, the
    agglomerations) is the built-in model's, bit for bit; shares and inflows agree to float32
    rounding (docs/traveltimes.md says why not bit for bit)."""
    tables = []
    for mode, cap in (("commute", "90"), ("freight", "360")):
        out = tmp_path / f"{mode}.{'csv' if mode == 'commute' else 'parquet'}"
        code, text, err = run_cli("times", *SMALL[:-1], "--mode", mode, "--out", str(out), "--cap-min", cap)
        assert code == 0, err
        assert f"{mode}.travel_times=" in text
        tables.append(f"{mode}.travel_times={out}")
    sweep = ["commute.cap_min=30,60,90", "freight.cap_min=120,240,360", "freight.model=gravity,doubly,radiation"]
    assert run_cli("run", *SMALL, *sweep, f"store.path={tmp_path / 'line.zarr'}")[0] == 0
    assert run_cli("run", *SMALL, *sweep, *tables, f"store.path={tmp_path / 'table.zarr'}")[0] == 0
    line, table = cube(tmp_path / "line.zarr"), cube(tmp_path / "table.zarr")
    for name in EXACT:
        assert np.array_equal(line[name], table[name], equal_nan=True), name
    for name in ("share", "inflow"):
        np.testing.assert_allclose(table[name], line[name], rtol=2e-6, atol=1e-6, equal_nan=True, err_msg=name)


def test_caps_swept_over_a_table_equal_each_cap_alone(tmp_path, run_cli):
    towns_args = SMALL[:-1]
    path = tmp_path / "t.parquet"
    assert run_cli("times", *towns_args, "--out", str(path), "--cap-min", "400")[0] == 0
    # an asymmetric table: the way out of each town 20 % slower than the way in for half the pairs
    frame = pd.read_parquet(path)
    slower = frame.origin.to_numpy() < frame.destination.to_numpy()
    frame.loc[slower, "minutes"] *= 1.2
    frame.to_parquet(path, index=False)
    table = [f"freight.travel_times={path}", "freight.model=doubly"]
    caps = ["60", "150", "240.5", "330"]
    assert (
        run_cli("run", *SMALL, *table, f"freight.cap_min={','.join(caps)}", f"store.path={tmp_path / 'all.zarr'}")[0]
        == 0
    )
    swept = cube(tmp_path / "all.zarr")
    for k, cap in enumerate(caps):
        alone = tmp_path / f"{cap}.zarr"
        assert run_cli("run", *SMALL, *table, f"freight.cap_min={cap}", f"store.path={alone}")[0] == 0
        one = cube(alone)
        for name, value in one.items():
            assert np.array_equal(swept[name][k], value, equal_nan=True), (cap, name)


def test_time_factor_is_a_scenario_of_slower_roads(tmp_path, run_cli):
    """time_factor=1.25 on a table equals the table with every minute times 1.25."""
    path = tmp_path / "t.parquet"
    assert run_cli("times", *SMALL[:-1], "--out", str(path))[0] == 0
    frame = pd.read_parquet(path)
    frame["minutes"] = 1.25 * frame["minutes"]
    slow = tmp_path / "slow.parquet"
    frame.to_parquet(slow, index=False)
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    assert (
        run_cli("run", *SMALL, f"freight.travel_times={path}", "freight.time_factor=1.0,1.25", f"store.path={a}")[0]
        == 0
    )
    assert run_cli("run", *SMALL, f"freight.travel_times={slow}", f"store.path={b}")[0] == 0
    swept, scaled = cube(a), cube(b)
    for name in EXACT:
        assert np.array_equal(swept[name][1], scaled[name], equal_nan=True), name
    assert not np.array_equal(swept["n_reachable"][0], swept["n_reachable"][1])


def _table(tmp_path, rows, name="bad.csv", header="origin,destination,minutes"):
    path = tmp_path / name
    path.write_text(header + "\n" + "".join(f"{r}\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "rows, expect",
    [
        (["1,2,10", "2,1,12", "1,99999,5"], ["row 3 (line 4)", "destination = 99999", "not a town_id"]),
        (["1,2,10", "2,1,-3"], ["row 2 (line 3)", "minutes = -3.0", "finite number >= 0"]),
        (["1,2,10", "2,3,"], ["row 2 (line 3)", "minutes = None", "finite number >= 0"]),
        (["1,2,10", "2,3,inf"], ["row 2 (line 3)", "minutes = inf"]),
        (["1,2,10", "2,3,4", "1,2,11"], ["row 3 (line 4)", "(1, 2) is listed again (first at row 1)"]),
        (["1,2,10", "3,3,4"], ["row 2 (line 3)", "both 3", "pairs of two towns"]),
        (["1,2,ten"], ["minutes", "allowed"]),
    ],
    ids=["unknown-id", "negative", "empty", "infinite", "repeated", "self-pair", "not-a-number"],
)
def test_a_bad_table_is_refused_in_one_line_and_nothing_is_written(tmp_path, run_cli, rows, expect):
    path = _table(tmp_path, rows)
    store = tmp_path / "never.zarr"
    code, _, err = run_cli("run", *SMALL, f"freight.travel_times={path}", f"store.path={store}")
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line, err
    assert str(path) in line, line
    for part in expect:
        assert part in line, (part, line)
    assert not store.exists()


def test_other_bad_tables_and_keys(tmp_path, run_cli):
    store = tmp_path / "never.zarr"
    cases = [
        ([f"freight.travel_times={_table(tmp_path, ['1,2,3'], header='from,to,minutes')}"], "origin"),
        ([f"freight.travel_times={tmp_path / 'absent.csv'}"], "is not a file"),
        ([f"freight.travel_times={_table(tmp_path, [], 'header-only.csv')}"], "no pairs"),
        (["freight.time_factor=1.5"], "1 without freight.travel_times"),
        (
            [f"freight.travel_times={_table(tmp_path, ['1,2,3'], 'ok.csv')}", "freight.time_factor=0"],
            "finite number > 0",
        ),
        ([f"freight.travel_times={_table(tmp_path, ['1,2,3'], 'ok2.csv')}", "freight.speed_kmh=40,60"], "time_factor"),
    ]
    # a table written for another run's towns: their ids are not these towns' ids
    other = tmp_path / "other.parquet"
    assert run_cli("times", "experiment=synthetic", "data.n=150", "data.seed=9", "--out", str(other))[0] == 0
    ids = pd.read_parquet(other)
    ids[["origin", "destination"]] += 10_000
    ids.to_parquet(other, index=False)
    cases.append(([f"freight.travel_times={other}"], "a table made for another run's towns"))
    for extra, expect in cases:
        code, _, err = run_cli("run", *SMALL, *extra, f"store.path={store}")
        assert code == 2, (extra, err)
        assert expect in err and err.count("\n") == 1 and "Traceback" not in err, (extra, err)
        assert not store.exists()


def test_a_changed_table_is_not_resumed_into(tmp_path, run_cli):
    path = _table(tmp_path, ["1,2,10", "2,1,10", "3,4,20"], "t.csv")
    store = tmp_path / "s.zarr"
    assert run_cli("run", *SMALL, f"freight.travel_times={path}", f"store.path={store}")[0] == 0
    path.write_text("origin,destination,minutes\n1,2,10\n2,1,10\n3,4,30\n")
    code, _, err = run_cli("run", *SMALL, f"freight.travel_times={path}", f"store.path={store}")
    assert code == 2 and "freight.travel_times (SHA-256)" in err, err


def test_roads_with_a_river_and_one_bridge(tmp_path):
    """The synthetic road network (agglo/engine/data/roadgrid.py): roads are never shorter than the
    straight line at their speed; by road every town reaches at most the towns it reaches in a
    straight line; towns across the river from the east-bank city join it in a straight line
    and, by road, only where the road reaches the city within the cap. Both against the twin."""
    from agglo.engine.config.schema import AggloConfig
    from agglo.engine.data.roadgrid import river_and_bridge

    frame, table = river_and_bridge()
    towns = from_frame(frame[["town_id", "name", "lat", "lon", "population"]], "roadgrid")
    n = len(towns)
    o, d = table["origin"].to_numpy() - 1, table["destination"].to_numpy() - 1
    line_min = 60 * haversine_rows(towns.lat, towns.lon, np.arange(n))[o, d] / 50.0
    assert (table["minutes"].to_numpy() >= line_min * (1 - 1e-12)).all()
    m = np.full((n, n), np.inf)
    m[o, d] = table["minutes"].to_numpy()
    path = tmp_path / "roads.parquet"
    table.to_parquet(path, index=False)
    base = AggloConfig()
    commute = dict(vars(base.commute), speed_kmh=50.0, circuity=1.0, cap_min=30.0)
    freight = dict(vars(base.freight))
    line = check(towns, make_config(commute, freight), {})
    road = check(towns, make_config(dict(commute, travel_times=str(path)), freight), {"commute": m})
    assert (road["n_reachable"][0] <= line["n_reachable"][0]).all()
    assert (road["n_reachable"][0] < line["n_reachable"][0]).sum() > n // 4
    city = int(np.flatnonzero(frame["population"].to_numpy() == 400000)[0])
    west = frame["column"].to_numpy() < 0
    assert ((line["core"][0] == city) & west).sum() >= 3
    by_road = np.flatnonzero((road["core"][0] == city) & west)
    assert (m[by_road, city] <= 30.0).all()
    assert len(by_road) < ((line["core"][0] == city) & west).sum()


@pytest.mark.slow
def test_a_table_on_the_local_cluster_equals_synchronous(tmp_path, run_cli):
    """Dask workers get the table's path and bytes' SHA-256 in the recipe, and build from it
    (or map the driver's cached network): the same cube, bit for bit."""
    path = tmp_path / "t.parquet"
    assert run_cli("times", *SMALL[:-1], "--out", str(path), "--cap-min", "300")[0] == 0
    frame = pd.read_parquet(path)
    frame.loc[frame.origin.to_numpy() > frame.destination.to_numpy(), "minutes"] *= 1.3  # asymmetric
    frame.to_parquet(path, index=False)
    args = [*SMALL, f"freight.travel_times={path}", "freight.cap_min=60,120,240", "commute.cap_min=30,60"]
    sync, local = tmp_path / "sync.zarr", tmp_path / "local.zarr"
    assert run_cli("run", *args, f"store.path={sync}")[0] == 0
    code, _, err = run_cli(
        "run", *args, "executor.kind=local", "executor.n_workers=2", "executor.batch_size=1", f"store.path={local}"
    )
    assert code == 0, err
    a, b = cube(sync), cube(local)
    for name in a:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


@pytest.mark.parametrize("factor, cap", [(1.0, 60.0), (1.1, 60.0), (0.7, 45.5), (1.3, 240.0)])
def test_reach_on_a_table_is_exact_at_the_cap(tmp_path, factor, cap):
    """t = time_factor · minutes <= cap_min decided in float64, to the last bit: a pair whose
    time lands on the cap is reachable, the next float64 minute beyond it is not."""
    m_in = cap / factor
    while factor * m_in > cap:
        m_in = np.nextafter(m_in, 0.0)
    while factor * np.nextafter(m_in, np.inf) <= cap:
        m_in = np.nextafter(m_in, np.inf)
    m_out = np.nextafter(m_in, np.inf)
    assert factor * m_in <= cap < factor * m_out
    towns, _ = _four_towns_table()
    m = np.full((4, 4), np.inf)
    m[0, 1], m[0, 2], m[0, 3], m[1, 0] = m_in, m_out, m_in / 2, m_out
    path = write(tmp_path / "edge.parquet", towns, m)
    freight = dict(vars(make_config({}, {}).freight), travel_times=path, time_factor=factor, cap_min=cap)
    out = kernels_one(towns, make_config({}, freight))
    assert out["n_reachable"][1].tolist() == [2, 0, 0, 0]


def test_text_town_ids_in_csv_and_parquet(tmp_path):
    """A town table keyed by text (INEGI's CVEGEO, say): the table's ids are read as text."""
    from agglo.engine.data.towns import synthetic

    base = synthetic(60, 5)
    frame = pd.DataFrame(
        {
            "town_id": [f"MX-{k:03d}" for k in range(60)],
            "name": base.name,
            "lat": base.lat,
            "lon": base.lon,
            "population": base.population,
        }
    )
    towns = from_frame(frame, "text ids")
    rng = np.random.default_rng(0)
    m = dense_table(towns, rng.uniform(1.0, 1.5, (60, 60)), rng.random((60, 60)) < 0.6, symmetric=False)
    for name in ("t.csv", "t.parquet"):
        freight = dict(vars(make_config({}, {}).freight), travel_times=write(tmp_path / name, towns, m))
        check(towns, make_config({}, freight, core_min=20000.0), {"freight": m})


def test_flows_on_a_table_report_its_minutes(tmp_path, run_cli):
    path = tmp_path / "t.csv"
    assert run_cli("times", *SMALL[:-1], "--out", str(path), "--cap-min", "200")[0] == 0
    table = pd.read_csv(path)
    table["minutes"] *= 1.5
    table.to_csv(path, index=False)
    flows = tmp_path / "flows.parquet"
    code, _, err = run_cli(
        "flows", *SMALL[:-1], f"freight.travel_times={path}", "freight.time_factor=0.5", "--out", str(flows)
    )
    assert code == 0, err
    got = pd.read_parquet(flows)
    got = got[got["mode"] == "freight"].merge(table, on=["origin", "destination"])
    assert len(got) > 0 and (got["travel_min"] <= 240.0).all()
    np.testing.assert_array_equal(got["travel_min"].to_numpy(), 0.5 * got["minutes"].to_numpy())


def test_a_table_too_large_for_memory_is_refused_before_reading(tmp_path):
    from agglo.engine.data.traveltimes import BYTES_PER_PAIR, check_fits, time_table
    from agglo.engine.errors import UserError

    path = write(tmp_path / "t.parquet", *_four_towns_table())
    table = time_table("freight.travel_times", path, 100.0)
    check_fits(table, 3 * BYTES_PER_PAIR)  # three pairs fit
    with pytest.raises(UserError, match="M pairs or more take about .* allowed: a table with fewer pairs"):
        check_fits(table, 3 * BYTES_PER_PAIR - 1)


def _four_towns_table():
    frame = pd.DataFrame(
        {
            "town_id": [1, 2, 3, 4],
            "name": list("abcd"),
            "lat": [17.0, 17.1, 17.2, 17.3],
            "lon": [-96.0] * 4,
            "population": [1000.0, 2000.0, 3000.0, 4000.0],
        }
    )
    towns = from_frame(frame, "four")
    m = np.full((4, 4), np.inf)
    m[0, 1], m[1, 2], m[2, 3] = 10.0, 20.0, 30.0
    return towns, m
