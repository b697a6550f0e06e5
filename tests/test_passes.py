"""Each fast gravity pass against the kernel-shaped float64 reference
(:func:`agglo.kernels.pair_shares`: a plain loop over the same neighbourhood rows), scenario
by scenario, in both loop shapes (a batch of fewer than 8 scenarios loops over pairs, a batch
of 8 or more over scenarios)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.network.build import prepare
from agglo.engine.planning.scenarios import batch_parameters, core_mask, reach_radii
from agglo.kernels import inflow_pass, origin_pass, pair_shares
from agglo.kernels.gravity.batch_sums import INNER_MIN
from tests.strategies import NEAR_SHARE, RTOL_INFLOW, make_config, modes, share_rtol, town_tables


def _reference(network, batch, mode_name, s):
    """Per town from the pair shares of scenario s: |R(i)|, reachable prefix, home share,
    best core (ties: lower index) and its share, the runner-up core share, and the inflow."""
    rows, places = network.rows[mode_name], network.places
    mode = batch.mode(mode_name)
    closed = bool(batch.closed[s])
    share, travel, home = pair_shares(rows, places, mode, s, closed)
    n = network.n_towns
    origin = np.repeat(np.arange(n), np.diff(rows.offsets))
    dest = rows.neighbour.astype(np.int64)
    within = travel <= mode.cap_min[s]
    reachable = within & ((places.region[origin] == places.region[dest]) | (not closed))
    is_core = core_mask(places.population, network.forced_core, batch.core_min_population[s : s + 1])[0]
    best = np.full(n, -1)
    best_share = np.full(n, np.nan)
    second = np.full(n, np.nan)
    for i in range(n):
        q = np.arange(rows.offsets[i], rows.offsets[i + 1])
        q = q[reachable[q] & is_core[dest[q]]]
        if q.size:
            order = np.lexsort((dest[q], -share[q]))  # largest share first, ties: lower index
            best[i], best_share[i] = dest[q[order[0]]], share[q[order[0]]]
            if q.size > 1:
                second[i] = share[q[order[1]]]
    return {
        "n_reachable": np.bincount(origin, weights=reachable, minlength=n).astype(np.int64),
        "reach": np.bincount(origin, weights=within, minlength=n).astype(np.int64),
        "home": home,
        "best": best,
        "best_share": best_share,
        "second": second,
        "inflow": np.bincount(dest, weights=places.population[origin] * share, minlength=n),
        "is_core": is_core,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    towns=town_tables(),
    base=modes(),
    caps=st.lists(st.floats(0.0, 400.0), min_size=1, max_size=12),
    closed=st.lists(st.booleans(), min_size=1, max_size=12),
    decays=st.lists(st.sampled_from(["power", "exponential"]), min_size=1, max_size=12),
    core_min=st.sampled_from([0.0, 1000.0, 100000.0]),
)
def test_fast_passes_equal_the_kernel_shaped_reference(towns, base, caps, closed, decays, core_min):
    n = len(caps)
    cfg = make_config(base, base, core_min=core_min)
    swept = {
        "commute.cap_min": np.asarray(caps),
        "borders": np.asarray(["closed" if closed[k % len(closed)] else "open" for k in range(n)], dtype=object),
        "commute.decay": np.asarray([decays[k % len(decays)] for k in range(n)], dtype=object),
        "commute.beta": np.asarray([base["beta"] if decays[k % len(decays)] == "power" else 0.05 for k in range(n)]),
    }
    batch = batch_parameters(cfg, swept, n)
    network = prepare(towns, towns.core, reach_radii(batch), core_floor=core_min)
    rows, places, mode = network.rows["commute"], network.places, batch.commute
    is_core = core_mask(places.population, network.forced_core, batch.core_min_population)
    # The same scenarios once as a batch of n (pair loop below 8) and once padded past 8 (scenario loop).
    for take in (np.arange(n), np.arange(max(n, INNER_MIN)) % n):
        sub = batch.take(take)
        origins = origin_pass(rows, places, sub.commute, sub.commute.gamma, sub.closed, is_core[take])
        inflow = inflow_pass(rows, places, sub.commute, sub.closed, origins)
        for k, s in enumerate(take):
            ref = _reference(network, batch, "commute", int(s))
            scenario = {"decay": swept["commute.decay"][s], "beta": mode.beta[s], "cap_min": mode.cap_min[s]}
            rtol = share_rtol(scenario)
            np.testing.assert_array_equal(origins.n_reachable[k], ref["n_reachable"])
            np.testing.assert_array_equal(origins.reach[k], ref["reach"])
            has = origins.denominator[k] > 0
            has_self = not np.isnan(mode.self_time_min[s])
            np.testing.assert_array_equal(has, (ref["n_reachable"] > 0) | has_self)
            if has_self:
                self_lw = mode.gamma[s] * places.log_pop + _log_f_self(mode, int(s))
                home = np.exp(self_lw - origins.shift[k]) / np.where(has, origins.denominator[k], 1.0)
                np.testing.assert_allclose(home[has], ref["home"][has], rtol=rtol, atol=1e-300)
            gap = np.abs(ref["best_share"] - ref["second"])
            tie = np.isfinite(ref["second"]) & (gap <= NEAR_SHARE * ref["best_share"])
            sure = ~tie
            np.testing.assert_array_equal(origins.best_core[k][sure], ref["best"][sure])
            found = sure & (ref["best"] >= 0)
            got = origins.best_weight[k][found] / origins.denominator[k][found]
            np.testing.assert_allclose(got, ref["best_share"][found], rtol=rtol, atol=1e-300)
            np.testing.assert_allclose(inflow[k], ref["inflow"], rtol=share_rtol(scenario, RTOL_INFLOW), atol=1e-9)


def _log_f_self(mode, s):
    from agglo.kernels.gravity.terms import log_deterrence

    return log_deterrence(mode.self_time_min[s], int(mode.decay[s]), mode.beta[s], mode.min_time_min[s])
