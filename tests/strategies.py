"""Hypothesis strategies and the kernel-vs-reference comparison shared by the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from agglo.engine.compute.batch import compute_batch
from agglo.engine.config.schema import AggloConfig, CoresConfig, ModeConfig
from agglo.engine.data.towns import Towns, from_frame
from agglo.engine.data.traveltimes import with_tables
from agglo.engine.network.build import prepare
from agglo.engine.planning.scenarios import batch_parameters, reach_radii
from tests.naive import scenario

NEAR = 1e-9  # relative gap under which two float64 values are an honest tie (reach: exact in the kernels)
# The kernels add float32 terms (7 significant digits, a vectorised exp good to 3e-7) into
# float64 sums: shares and inflows carry a relative error of a few 1e-7. A best core or a
# threshold decided by less than NEAR_SHARE is an honest near-tie; RTOL bounds the rest.
NEAR_SHARE = 1e-5
RTOL = 1e-5
# An inflow sums exp(a_j + c_i + log f) where a_j = gamma·log(population_j) and the origin's
# term c_i are float32 numbers of magnitude up to ~50 (ulp ~4e-6): its relative error can
# reach a few 1e-5 when gamma is well above 1.
RTOL_INFLOW = 5e-5
# Exponential decay: a term's exponent is beta·t itself (in nats), computed from the float32
# log-distance (|Δ log d| <= 2^-22 below 3 000 km), a float32 exp (1.6e-7) and a float32 K
# (2^-24): a relative error of about 4.2e-7·beta·t. So shares and inflows get 5e-7 per nat of
# beta·cap_min on top (power decay's terms do not grow with t: nothing added).
RTOL_PER_NAT = 5e-7


def share_rtol(mode_cfg, base: float = RTOL) -> float:
    """The relative tolerance of a float32-term share or inflow for a mode (see RTOL_PER_NAT)."""
    decay, beta, cap = _field(mode_cfg, "decay"), _field(mode_cfg, "beta"), _field(mode_cfg, "cap_min")
    return base + (RTOL_PER_NAT * beta * cap if decay == "exponential" else 0.0)


def _field(mode_cfg, name):
    return mode_cfg[name] if isinstance(mode_cfg, dict) else getattr(mode_cfg, name)


# docs/model.md's default parameters of each mode, as the schema holds them.
DEFAULT_COMMUTE = vars(AggloConfig().commute).copy()
DEFAULT_FREIGHT = vars(AggloConfig().freight).copy()


@st.composite
def town_tables(draw, max_towns: int = 40):
    """Small systems of towns: clustered, with repeated places and equal populations."""
    n = draw(st.integers(1, max_towns))
    n_sites = draw(st.integers(1, max(1, n)))
    site_lat = draw(st.lists(st.floats(16.0, 18.0), min_size=n_sites, max_size=n_sites))
    site_lon = draw(st.lists(st.floats(-97.5, -95.5), min_size=n_sites, max_size=n_sites))
    which = draw(st.lists(st.integers(0, n_sites - 1), min_size=n, max_size=n))
    jitter = draw(st.lists(st.sampled_from([0.0, 0.0, 1e-6, 0.01, 0.1, 0.3]), min_size=n, max_size=n))
    sizes = st.one_of(st.sampled_from([500.0, 1000.0, 20000.0, 150000.0]), st.floats(1.0, 2e6))
    population = draw(st.lists(sizes, min_size=n, max_size=n))
    region = draw(st.lists(st.sampled_from(["A", "B", "C"]), min_size=n, max_size=n))
    core = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    lat = [site_lat[w] + j for w, j in zip(which, jitter)]
    lon = [site_lon[w] - j for w, j in zip(which, jitter)]
    frame = pd.DataFrame(
        {
            "town_id": np.arange(n) + 1,
            "name": [f"t{k}" for k in range(n)],
            "lat": lat,
            "lon": lon,
            "population": population,
            "region": region,
            "core": core,
        }
    )
    return from_frame(frame, "hypothesis")


@st.composite
def modes(draw):
    decay = draw(st.sampled_from(["power", "exponential"]))
    beta = draw(st.floats(0.0, 3.0)) if decay == "power" else draw(st.floats(0.0, 0.2))
    return {
        "model": "gravity",
        "speed_kmh": draw(st.floats(20.0, 100.0)),
        "circuity": draw(st.floats(1.0, 2.0)),
        "cap_min": draw(st.one_of(st.just(0.0), st.floats(0.0, 400.0))),
        "decay": decay,
        "beta": beta,
        "alpha": 1.0,
        "gamma": draw(st.floats(0.5, 1.5)),
        "threshold": draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))),
        "self_time_min": draw(st.one_of(st.none(), st.floats(1.0, 30.0))),
        "min_time_min": draw(st.floats(0.5, 5.0)),
    }


def make_config(commute: dict, freight: dict, borders: str = "open", core_min: float = 100000.0) -> AggloConfig:
    return AggloConfig(
        commute=ModeConfig(**commute),
        freight=ModeConfig(**freight),
        borders=borders,
        cores=CoresConfig(min_population=core_min),
    )


def kernels_one(towns: Towns, cfg: AggloConfig) -> dict:
    """Run the kernels for one scenario; arrays (2, N) / (2,)."""
    params = batch_parameters(cfg, {}, 1)
    radii = with_tables(cfg, reach_radii(params))  # a mode's travel-time table, if it has one
    network = prepare(towns, towns.core.copy(), radii, core_floor=cfg.cores.min_population)
    out = compute_batch(network, params)
    return {k: v[0] for k, v in out.items()}


def reference_one(towns: Towns, cfg: AggloConfig, mode: str, twin=scenario, **kw) -> dict:
    """One scenario of ``cfg`` for ``mode`` by a NumPy twin (tests/naive.py)."""
    is_core = (towns.population >= cfg.cores.min_population) | towns.core
    return twin(
        towns.lat,
        towns.lon,
        towns.population,
        towns.region_code,
        is_core,
        vars(cfg.mode(mode)),
        cfg.borders == "closed",
        **kw,
    )


def compare(kernel: dict, ref: dict, mode_index: int, mode_cfg) -> dict:
    """Assert agreement town for town; return counts of honest near-ties left out."""
    cap = mode_cfg.cap_min
    reach_tie = ref["cap_gap"] <= NEAR * max(cap, 1.0)
    best, second = ref["share"], ref["second"]
    share_tie = np.isfinite(second) & (np.abs(best - second) <= NEAR_SHARE * np.abs(best))
    rtol = share_rtol(mode_cfg)
    near = max(NEAR_SHARE, rtol)
    threshold_tie = np.abs(best - mode_cfg.threshold) <= near * max(mode_cfg.threshold, 1e-300)
    tie = reach_tie | share_tie | threshold_tie
    k = {name: np.asarray(v[mode_index]) for name, v in kernel.items()}
    sure = ~reach_tie
    np.testing.assert_array_equal(k["n_reachable"][sure], ref["n_reachable"][sure])
    ok = ~tie
    np.testing.assert_array_equal(k["core"][ok], ref["core"][ok])
    np.testing.assert_allclose(k["share"][ok], ref["share"][ok], rtol=rtol, atol=1e-37, equal_nan=True)
    if not reach_tie.any():
        # An inflow made only of flows below e^-30 persons carries their float32 exponent's
        # relative error (~1e-5 at |x| ~ 35): 1e-9 persons absolute is far below any use.
        np.testing.assert_allclose(k["inflow"], ref["inflow"], rtol=share_rtol(mode_cfg, RTOL_INFLOW), atol=1e-9)
    if not tie.any():
        np.testing.assert_allclose(k["agglo_population"], ref["agglo_population"], rtol=1e-12)
        np.testing.assert_allclose(k["coverage"], ref["coverage"], rtol=1e-12, equal_nan=True)
        assert int(k["n_agglomerations"]) == int(ref["n_agglomerations"])
    both = np.isfinite(ref["share"]) & ok & (ref["share"] > 0)
    share_err = float(np.max(np.abs(k["share"][both] / ref["share"][both] - 1), initial=0.0))
    flows = ref["inflow"] > 1e-9
    inflow_err = float(np.max(np.abs(k["inflow"][flows] / ref["inflow"][flows] - 1), initial=0.0))
    return {
        "near_ties": int(tie.sum()),
        "core_differs_at_ties": int((k["core"] != ref["core"]).sum()),
        "share_rel_err": share_err,
        "inflow_rel_err": inflow_err,
    }
