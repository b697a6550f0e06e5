"""The other flow models (attraction, doubly, radiation) against their dense NumPy twin."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.towns import load_geonames
from tests.naive import scenario_dense
from tests.strategies import compare, kernels_one, make_config, modes, reference_one, town_tables

MODELS = ["attraction", "doubly", "radiation"]


def reference(towns, cfg, mode):
    return reference_one(towns, cfg, mode, twin=scenario_dense)


def check(towns, cfg):
    out = kernels_one(towns, cfg)
    for m, mode in enumerate(("commute", "freight")):
        ref = reference(towns, cfg, mode)
        if cfg.mode(mode).model == "doubly":
            if not ref["ipf_error"] < 1e-9:  # no balanced table (or not within 1000 rounds): both must say so
                assert not out["ipf_error"][m] < 1e-9
                continue
            assert out["ipf_error"][m] < 1e-9
            # float32 distances move the fixed point by ~1e-7: a slow balancing may need a few more rounds
            assert abs(int(out["ipf_iterations"][m]) - ref["ipf_iterations"]) <= max(1, ref["ipf_iterations"] // 10)
        compare(out, ref, m, cfg.mode(mode))
        if cfg.mode(mode).model != "doubly":
            assert out["ipf_iterations"][m] == 0 and np.isnan(out["ipf_error"][m])
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    towns=town_tables(),
    commute=modes(),
    freight=modes(),
    models=st.tuples(*[st.sampled_from(MODELS)] * 2),
    closed=st.booleans(),
    core_min=st.sampled_from([0.0, 20000.0, 1e7]),
)
def test_models_equal_reference(towns, commute, freight, models, closed, core_min):
    commute = dict(commute, model=models[0], alpha=1.0 + 0.3 * (commute["gamma"] - 1.0))
    freight = dict(freight, model=models[1])
    check(towns, make_config(commute, freight, "closed" if closed else "open", core_min))


@pytest.mark.parametrize("model", MODELS)
def test_models_on_oaxaca(model):
    from agglo.engine.config import AggloConfig

    towns = load_geonames("MX", ["20"], 500)
    base = AggloConfig()
    commute = dict(vars(base.commute), model=model)
    freight = dict(vars(base.freight), model=model)
    out = check(towns, make_config(commute, freight, core_min=100000.0))
    assert np.isfinite(out["coverage"]).all()


def test_a_batch_mixing_models_equals_one_scenario_at_a_time():
    from agglo.engine.compute import compute_batch
    from agglo.engine.network import prepare
    from agglo.engine.scenarios import batch_parameters, reach_radii
    from agglo.engine.towns import synthetic
    from tests.strategies import DEFAULT_COMMUTE

    towns = synthetic(300, 4)
    cfg = make_config(dict(DEFAULT_COMMUTE), dict(DEFAULT_COMMUTE, cap_min=240.0, beta=1.0), core_min=20000.0)
    models = np.array(["radiation", "gravity", "doubly", "attraction", "gravity", "radiation"], dtype=object)
    swept = {"commute.model": models, "freight.model": models[::-1].copy()}
    params = batch_parameters(cfg, swept, len(models))
    network = prepare(towns, towns.core, reach_radii(params), core_floor=20000.0)
    whole = compute_batch(network, params)
    for s in range(len(models)):
        one = compute_batch(network, batch_parameters(cfg, {k: v[s : s + 1] for k, v in swept.items()}, 1))
        for name in whole:
            assert np.array_equal(one[name][0], whole[name][s], equal_nan=True), (name, s)
