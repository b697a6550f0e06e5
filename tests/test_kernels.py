"""The kernels against the plain NumPy reference (tests/naive.py), town for town."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.compute.pairs import scenario_pairs
from agglo.engine.data.towns import from_frame
from agglo.engine.network.build import prepare
from agglo.engine.planning.scenarios import batch_parameters, reach_radii
from agglo.kernels import build_neighbourhood
from tests.naive import haversine_rows
from tests.strategies import (
    DEFAULT_COMMUTE,
    DEFAULT_FREIGHT,
    compare,
    kernels_one,
    make_config,
    modes,
    reference_one,
    town_tables,
)

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
    network = prepare(towns, towns.core, reach_radii(params))
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
    _check_neighbourhood(towns.lat, towns.lon, radius)


def test_neighbourhood_sorts_crowded_distance_bands():
    """Rows where dozens of towns share a place or a distance band (the sort's bucket
    overflow path) still come out by (distance, town index)."""
    rng = np.random.default_rng(7)
    lat = np.concatenate([[17.0], np.full(60, 17.05), 17.2 + rng.normal(0, 1e-4, 80), rng.uniform(16, 18, 120)])
    lon = np.concatenate([[-96.7], np.full(60, -96.7), -96.6 + rng.normal(0, 1e-4, 80), rng.uniform(-98, -95, 120)])
    order = rng.permutation(lat.size)  # the crowds scattered over the town indices
    _check_neighbourhood(lat[order], lon[order], 150.0)
    # Two crowds at exactly equal distance from the town between them, in different grid
    # cells: their order comes from the town index alone.
    lat = np.concatenate([[0.0], np.full(15, 1.0), np.full(15, -1.0)])
    order = rng.permutation(lat.size)
    _check_neighbourhood(lat[order], np.zeros(lat.size), 150.0)


def _check_neighbourhood(lat, lon, radius):
    offsets, neighbour, dist = build_neighbourhood(lat, lon, radius)
    n = len(lat)
    d = haversine_rows(lat, lon, np.arange(n))
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

    from agglo.engine.data.towns import from_frame

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

    from agglo.engine.data.towns import from_frame

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


def _mixed_sweep(n: int) -> dict:
    """Scenarios that differ in everything a kernel branches on: caps, borders, decay,
    circuity (the per-scenario log-scale), min_time, gamma (negative: the exact-maximum
    path; 8: every term underflows against the cheap bound, the row is redone)."""
    pick = lambda values, dtype=np.float64: np.array([values[i % len(values)] for i in range(n)], dtype=dtype)  # noqa: E731
    return {
        "commute.cap_min": pick([20.0, 45.0, 60.0, 90.0, 120.0, 30.0, 75.0]),
        "borders": pick(["open", "closed", "open"], object),
        "commute.gamma": pick([1.0, 1.0, 8.0, 1.0, -0.5]),
        "commute.circuity": pick([1.3, 1.3, 1.3, 1.6]),
        "freight.decay": pick(["power", "exponential", "power"], object),
        "freight.beta": pick([1.0, 0.5, 1.5, 1.0, 0.02, 1.5]),
        "freight.min_time_min": pick([1.0, 1.0, 5.0, 1.0, 1.0]),
    }


@pytest.mark.parametrize(
    "batch, sweep",
    [
        (1, "mixed"),
        (3, "mixed"),
        (8, "mixed"),
        (23, "mixed"),
        (5, "beta"),
        (16, "beta"),
        (16, "caps"),
        (3, "wide"),
        (16, "wide"),
        (23, "wide"),
    ],
)
def test_batch_results_do_not_depend_on_batch_or_threads(batch, sweep):
    """Bit for bit, whatever the batch: batches of 8 or more loop over scenarios
    innermost, smaller ones over pairs; a 'beta' sweep takes the shortest form of the
    scenario loop (same reach, same log-scale, power only: four pairs per loop), a
    'caps' sweep that form up to the shortest reach and the masked form beyond; a 'wide'
    sweep mixes caps from 0.5 to 400 minutes and speeds in no order, so that scenarios
    leave the scenario loop as their reach ends (the float64 sums are also compared
    with the batch in its given order, not the engine's widest-first order)."""
    import numba

    from agglo.engine.compute.batch import compute_batch
    from agglo.engine.data.towns import synthetic

    towns = synthetic(400, 3)
    base = dict(DEFAULT_COMMUTE)
    cfg = make_config(base, dict(base, cap_min=240.0, beta=1.0), core_min=20000.0)
    n = 23
    swept = {
        "mixed": _mixed_sweep(n),
        "beta": {"freight.beta": np.linspace(0.5, 2.0, n)},
        "caps": {"freight.beta": np.linspace(0.5, 2.0, n), "freight.cap_min": np.linspace(60.0, 240.0, n)},
        "wide": _wide_caps(n),
    }[sweep]
    params = batch_parameters(cfg, swept, n)
    network = prepare(towns, towns.core, reach_radii(params), core_floor=20000.0)
    whole = compute_batch(network, params, share_repeats=False)  # every scenario through the batch's kernels
    one_by_one = [
        compute_batch(network, batch_parameters(cfg, {k: v[s : s + 1] for k, v in swept.items()}, 1)) for s in range(n)
    ]
    for name in whole:
        assert np.array_equal(np.concatenate([o[name] for o in one_by_one]), whole[name], equal_nan=True), name
    # The float64 sums themselves, before the cube's float32 casts could hide a changed order.
    for mode in ("commute", "freight"):
        sums = _gravity_sums(network, params, mode)
        alone = [_gravity_sums(network, _slice(params, s), mode) for s in range(n)]
        for name in sums:
            assert np.array_equal(np.concatenate([a[name] for a in alone]), sums[name]), (mode, name)
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        for start in range(0, n, batch):
            part = {k: v[start : start + batch] for k, v in swept.items()}
            got = compute_batch(
                network, batch_parameters(cfg, part, len(next(iter(part.values())))), share_repeats=False
            )
            for name in whole:
                assert np.array_equal(got[name], whole[name][start : start + batch], equal_nan=True), name
    finally:
        numba.set_num_threads(saved)


def _wide_caps(n: int) -> dict:
    """Caps from 0.5 to 400 minutes in a fixed shuffled order, speeds varying, some
    scenarios with the same reach as another, a few under closed borders."""
    rng = np.random.default_rng(12)
    caps = np.geomspace(0.5, 400.0, n)
    commute = rng.permutation(caps)
    commute[5] = commute[2]  # equal reaches, apart in the batch
    return {
        "commute.cap_min": commute,
        "freight.cap_min": rng.permutation(caps),
        "freight.speed_kmh": rng.choice([30.0, 50.0, 80.0], n),
        "freight.beta": rng.uniform(0.5, 2.0, n),
        "borders": np.array(["closed" if k % 7 == 3 else "open" for k in range(n)], dtype=object),
    }


def _slice(params, s):
    return params.take(slice(s, s + 1))


def _gravity_sums(network, params, mode):
    from agglo.engine.compute.models import _gravity
    from agglo.engine.planning.scenarios import core_mask

    is_core = core_mask(network.population, network.forced_core, params.core_min_population)
    got = _gravity(network, network.rows[mode], params.mode(mode), params.closed, is_core)
    return {k: got[k] for k in ("denominator", "inflow", "best_weight")}


def test_mixed_sweep_equals_reference():
    """The branches of the batched kernels against the NumPy twin, scenario by scenario."""
    from agglo.engine.data.towns import synthetic

    check_mixed_sweep(synthetic(300, 5))


def check_mixed_sweep(towns) -> None:
    """A mixed batch of 12 scenarios (:func:`_mixed_sweep`) on ``towns`` (with their ``mass``,
    if any) against the twin, scenario by scenario."""
    from agglo.engine.compute.batch import compute_batch

    base = dict(DEFAULT_COMMUTE)
    cfg = make_config(base, dict(base, cap_min=240.0, beta=1.0), core_min=20000.0)
    n = 12
    swept = _mixed_sweep(n)
    params = batch_parameters(cfg, swept, n)
    network = prepare(towns, towns.core, reach_radii(params), core_floor=20000.0)
    out = compute_batch(network, params)
    for s in range(n):
        commute = dict(base, cap_min=float(swept["commute.cap_min"][s]), gamma=float(swept["commute.gamma"][s]))
        commute["circuity"] = float(swept["commute.circuity"][s])
        freight = dict(base, cap_min=240.0, decay=str(swept["freight.decay"][s]), beta=float(swept["freight.beta"][s]))
        freight["min_time_min"] = float(swept["freight.min_time_min"][s])
        one = make_config(commute, freight, str(swept["borders"][s]), core_min=20000.0)
        for m, mode in enumerate(("commute", "freight")):
            ref = reference_one(towns, one, mode, mass=towns.mass)
            compare({k: v[s] for k, v in out.items()}, ref, m, one.mode(mode))


def test_row_redone_when_every_term_underflows():
    """A large gamma and a big city beyond commuting reach but within the neighbourhood:
    every reachable log-weight lies more than 87 below the cheap bound, float32 exp
    would return only its floor; the kernel must redo the row with the exact maximum."""
    frame = pd.DataFrame(
        {
            "town_id": [1, 2, 3, 4],
            "name": ["small", "neighbour", "other", "city"],
            "lat": [17.0, 17.05, 17.0, 18.2],
            "lon": [-96.0, -96.0, -96.08, -96.0],
            "population": [600.0, 500.0, 900.0, 1e7],
            "region": ["A"] * 4,
            "core": [False, True, False, False],
        }
    )
    towns = from_frame(frame, "underflow")
    commute = dict(DEFAULT_COMMUTE, gamma=10.0, threshold=0.0, self_time_min=None)
    cfg = make_config(commute, dict(DEFAULT_FREIGHT), core_min=1e12)
    out = kernels_one(towns, cfg)
    ref = reference_one(towns, cfg, "commute")
    assert ref["n_reachable"][0] == 2 and ref["core"][0] == 1
    compare(out, ref, 0, cfg.commute)


def test_a_mode_scenario_repeated_in_a_batch_or_remembered_from_an_earlier_one_is_copied_bit_for_bit():
    """A sweep crossing commuting and freight values repeats each mode's scenarios: each is
    computed once per batch (mode_keys) and, with the run's memo, once per run. Every town
    of Oaxaca (split into two regions at its median longitude, for the borders); the copies
    equal computing every scenario (share_repeats=False) and each one alone, bit for bit; a scenario
    that differs from another in one key only (borders, cores, threshold, model, beta) is
    not copied from it; a memo too small for a batch drops its oldest scenarios and still
    gives the same bits."""
    import dataclasses

    from agglo.engine.compute.batch import ModeMemo, compute_batch
    from tests.real_towns import oaxaca_geonames

    towns = oaxaca_geonames()
    towns = dataclasses.replace(towns, region=np.where(towns.lon > np.median(towns.lon), "east", "west").astype(object))
    cfg = make_config(dict(DEFAULT_COMMUTE), dict(DEFAULT_COMMUTE, cap_min=240.0, beta=1.0), core_min=20000.0)
    pairs = [(c, f) for c in (30.0, 60.0, 90.0) for f in (120.0, 240.0)]
    n_grid = 2 * len(pairs)  # every pair twice, nothing else differing
    variants = {  # scenario 0 again with one key changed each
        "borders": "closed",
        "cores.min_population": 60000.0,
        "freight.threshold": 0.45,
        "freight.model": "radiation",
        "freight.beta": 1.5,
        "commute.beta": 2.5,
    }
    n = n_grid + len(variants)
    grid = np.array(pairs * 2 + [pairs[0]] * len(variants))
    swept = {"commute.cap_min": grid[:, 0], "freight.cap_min": grid[:, 1]}
    base = {"borders": "open", "cores.min_population": 20000.0, "freight.threshold": 0.3}
    base |= {"freight.model": "gravity", "freight.beta": 1.0, "commute.beta": DEFAULT_COMMUTE["beta"]}
    for q, (key, value) in enumerate(variants.items()):
        column = np.array([base[key]] * n, dtype=object if isinstance(value, str) else np.float64)
        column[n_grid + q] = value
        swept[key] = column
    params = batch_parameters(cfg, swept, n)
    network = prepare(towns, towns.core, reach_radii(params), core_floor=20000.0)
    every = compute_batch(network, params, share_repeats=False)
    for q, key in enumerate(variants):  # each variant's results differ from scenario 0's
        s, m = n_grid + q, int(key.startswith("freight") or "." not in key)
        assert not all(np.array_equal(every[v][s, m], every[v][0, m], equal_nan=True) for v in every), key
    alone = [
        compute_batch(network, batch_parameters(cfg, {k: v[s : s + 1] for k, v in swept.items()}, 1)) for s in range(n)
    ]
    halves = [slice(0, n_grid // 2), slice(n_grid // 2, n)]

    def in_halves(memo):
        return [
            compute_batch(network, batch_parameters(cfg, {k: v[h] for k, v in swept.items()}, h.stop - h.start), memo)
            for h in halves
        ]

    memo, small = ModeMemo(), ModeMemo(budget=3 * len(towns) * 40)  # about three scenarios of one mode
    parts, tight = in_halves(memo), in_halves(small)
    assert memo.hits > 0 and 0 < small.nbytes <= small.budget
    for name in every:
        assert np.array_equal(compute_batch(network, params)[name], every[name], equal_nan=True), name
        assert np.array_equal(np.concatenate([a[name] for a in alone]), every[name], equal_nan=True), name
        assert np.array_equal(np.concatenate([p[name] for p in parts]), every[name], equal_nan=True), name
        assert np.array_equal(np.concatenate([p[name] for p in tight]), every[name], equal_nan=True), name
