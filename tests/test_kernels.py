"""The kernels against the plain NumPy reference (tests/naive.py), town for town."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.compute import batch_parameters, prepare, reach_radius_km, scenario_pairs
from kernels import build_neighbourhood
from tests.naive import haversine_rows
from tests.strategies import DEFAULT_COMMUTE, compare, kernels_one, make_config, modes, reference_one, town_tables

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(
    towns=town_tables(),
    commute=modes(),
    freight=modes(),
    closed=st.booleans(),
    core_min=st.sampled_from([0.0, 1000.0, 100000.0, 1e9]),
)
def test_kernels_equal_reference(towns, commute, freight, closed, core_min):
    cfg = make_config(commute, freight, "closed" if closed else "open", core_min)
    kernel = kernels_one(towns, cfg)
    for m, mode in enumerate(("commute", "freight")):
        compare(kernel, reference_one(towns, cfg, mode), m, cfg.mode(mode))


@SETTINGS
@given(towns=town_tables(), mode=modes(), closed=st.booleans())
def test_shares_with_home_sum_to_one(towns, mode, closed):
    cfg = make_config(mode, mode, "closed" if closed else "open")
    params = batch_parameters(cfg, {}, 1)
    network = prepare(towns, towns.core, reach_radius_km(params))
    pairs = scenario_pairs(network, params, "commute")
    ref = reference_one(towns, cfg, "commute", keep_pairs=True)
    row_sum = np.bincount(pairs["origin"], weights=pairs["share"], minlength=len(towns))
    total = pairs["home_share"] + row_sum
    has_any = np.isfinite(pairs["home_share"])
    np.testing.assert_allclose(total[has_any], 1.0, rtol=1e-12)
    # Pair shares equal the reference's dense s_ij.
    rows, _, s, reach = ref["pairs"][0]
    dense = np.zeros((len(towns), len(towns)))
    dense[pairs["origin"], pairs["destination"]] = pairs["share"]
    np.testing.assert_allclose(dense[rows], s, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(pairs["home_share"], ref["s_home"], rtol=1e-9, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(towns=town_tables(max_towns=60), radius=st.floats(0.0, 400.0))
def test_neighbourhood_is_every_pair_within_radius(towns, radius):
    offsets, neighbour, dist = build_neighbourhood(towns.lat, towns.lon, radius)
    n = len(towns)
    d = haversine_rows(towns.lat, towns.lon, np.arange(n))
    want = (d <= radius) & ~np.eye(n, dtype=bool)
    got = np.zeros((n, n), dtype=bool)
    origin = np.repeat(np.arange(n), np.diff(offsets))
    got[origin, neighbour] = True
    assert len(neighbour) == want.sum()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(dist, d[origin, neighbour], rtol=1e-12, atol=1e-9)
    for i in range(n):  # rows sorted by distance, ties by index
        row = list(zip(dist[offsets[i] : offsets[i + 1]], neighbour[offsets[i] : offsets[i + 1]]))
        assert row == sorted(row)


def _threshold_zero(mode):
    return dict(mode, threshold=0.0)


@SETTINGS
@given(towns=town_tables(), mode=modes(), bigger=st.floats(0.0, 300.0))
def test_reach_and_zero_threshold_coverage_never_fall_when_cap_rises(towns, mode, bigger):
    """With threshold 0 a town is covered as soon as a core is reachable: monotone in the cap.
    (With a positive threshold it is not: a larger cap adds competitors to the denominator.)"""
    low = _threshold_zero(mode)
    high = dict(low, cap_min=low["cap_min"] + bigger)
    a = kernels_one(towns, make_config(low, high, core_min=20000.0))
    assert (a["n_reachable"][1] >= a["n_reachable"][0]).all()
    covered_low, covered_high = a["core"][0] >= 0, a["core"][1] >= 0
    assert (covered_high | ~covered_low).all()
    if np.isfinite(a["coverage"][0]):
        assert a["coverage"][1] >= a["coverage"][0]


@SETTINGS
@given(towns=town_tables(), mode=modes())
def test_closed_borders_keep_members_in_their_region(towns, mode):
    """Closed borders: every member's core lies in its region; with threshold 0 the covered
    towns are a subset of those under open borders (with a positive threshold a town can
    join a same-region core once its foreign competitors are gone)."""
    region = towns.region_code
    closed = kernels_one(towns, make_config(mode, _threshold_zero(mode), "closed", 20000.0))
    opened = kernels_one(towns, make_config(mode, _threshold_zero(mode), "open", 20000.0))
    for m in (0, 1):
        c = closed["core"][m]
        members = c >= 0
        assert (region[c[members]] == region[members]).all()
        assert (closed["n_reachable"][m] <= opened["n_reachable"][m]).all()
    assert ((closed["core"][1] >= 0) <= (opened["core"][1] >= 0)).all()


def test_single_town_and_all_cores():
    import pandas as pd

    from engine.towns import from_frame

    one = from_frame(
        pd.DataFrame({"town_id": [1], "name": ["a"], "lat": [17.0], "lon": [-96.0], "population": [900.0]}), "one"
    )
    base = dict(DEFAULT_COMMUTE, self_time_min=None)
    out = kernels_one(one, make_config(base, base))
    assert out["core"].tolist() == [[-1], [-1]] and np.isnan(out["share"]).all() and (out["coverage"] == 0).all()
    out = kernels_one(one, make_config(base, base, core_min=0.0))
    assert (
        out["core"].tolist() == [[0], [0]] and (out["share"] == 1).all() and out["n_agglomerations"].tolist() == [0, 0]
    )
    assert np.isnan(out["coverage"]).all()  # no non-core town: coverage undefined


def test_exact_tie_goes_to_lower_index():
    import pandas as pd

    from engine.towns import from_frame

    # Two equal cores at exactly the same distance east and west of a small town (lon ±0.25 is
    # symmetric in floating point, so the shares tie to the last bit).
    frame = pd.DataFrame(
        {
            "town_id": [10, 20, 30],
            "name": ["east", "mid", "west"],
            "lat": [17.0, 17.0, 17.0],
            "lon": [0.25, 0.0, -0.25],
            "population": [200000.0, 1000.0, 200000.0],
        }
    )
    towns = from_frame(frame, "tie")
    base = dict(DEFAULT_COMMUTE, cap_min=120.0, threshold=0.0)
    out = kernels_one(towns, make_config(base, base))
    ref = reference_one(towns, make_config(base, base), "commute")
    assert ref["share"][1] == ref["second"][1]
    assert out["core"][0][1] == 0 == ref["core"][1]


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_batch_results_do_not_depend_on_batch_or_threads(batch):
    import numba

    from engine.compute import compute_batch
    from engine.towns import synthetic

    towns = synthetic(400, 3)
    base = dict(DEFAULT_COMMUTE)
    cfg = make_config(base, dict(base, cap_min=240.0, beta=1.0), core_min=20000.0)
    caps = np.array([20.0, 45.0, 60.0, 90.0, 120.0, 30.0, 75.0])
    swept = {"commute.cap_min": caps, "borders": np.array(["open", "closed"] * 3 + ["open"], dtype=object)}
    params = batch_parameters(cfg, swept, len(caps))
    network = prepare(towns, towns.core, reach_radius_km(params))
    whole = compute_batch(network, params)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        for start in range(0, len(caps), batch):
            part = {k: v[start : start + batch] for k, v in swept.items()}
            got = compute_batch(network, batch_parameters(cfg, part, len(part["borders"])))
            for name in whole:
                assert np.array_equal(got[name], whole[name][start : start + batch], equal_nan=True), name
    finally:
        numba.set_num_threads(saved)
