"""A town table's ``mass`` column: the destination mass of the gravity model (docs/model.md,
"Shares"), e.g. jobs; the population stays the origin mass, the core rule and the summaries."""

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.compute.pairs import scenario_pairs
from agglo.engine.config.schema import AggloConfig
from agglo.engine.network.build import prepare
from agglo.engine.planning.scenarios import batch_parameters, reach_radii
from tests.strategies import compare, kernels_one, make_config, modes, reference_one, town_tables

SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MASSES = st.one_of(st.sampled_from([1.0, 300.0, 5000.0]), st.floats(0.5, 5e6))


def _with_mass(towns, masses):
    return dataclasses.replace(towns, mass=np.array(masses[: len(towns)], dtype=np.float64))


@SETTINGS
@given(
    towns=town_tables(),
    masses=st.lists(MASSES, min_size=40, max_size=40),
    commute=modes(),
    freight=modes(),
    closed=st.booleans(),
    core_min=st.sampled_from([0.0, 1000.0, 100000.0]),
)
def test_kernels_with_a_destination_mass_equal_the_twin(towns, masses, commute, freight, closed, core_min):
    towns = _with_mass(towns, masses)
    cfg = make_config(commute, freight, "closed" if closed else "open", core_min)
    kernel = kernels_one(towns, cfg)
    for m, mode in enumerate(("commute", "freight")):
        compare(kernel, reference_one(towns, cfg, mode, mass=towns.mass), m, cfg.mode(mode))


@SETTINGS
@given(towns=town_tables(), masses=st.lists(MASSES, min_size=40, max_size=40), mode=modes())
def test_flow_pairs_with_a_destination_mass_equal_the_twin(towns, masses, mode):
    towns = _with_mass(towns, masses)
    cfg = make_config(mode, mode)
    params = batch_parameters(cfg, {}, 1)
    network = prepare(towns, towns.core, reach_radii(params))
    pairs = scenario_pairs(network, params, "commute")
    rows, _, s, _ = reference_one(towns, cfg, "commute", keep_pairs=True, mass=towns.mass)["pairs"][0]
    dense = np.zeros((len(towns), len(towns)))
    dense[pairs["origin"], pairs["destination"]] = pairs["share"]
    np.testing.assert_allclose(dense[rows], s, rtol=1e-9, atol=1e-300)


def test_a_mass_equal_to_the_population_changes_no_bit_and_another_changes_the_shares():
    from tests.real_towns import oaxaca_geonames

    oaxaca_towns = oaxaca_geonames()
    cfg = AggloConfig()
    plain = kernels_one(oaxaca_towns, cfg)
    same = kernels_one(dataclasses.replace(oaxaca_towns, mass=oaxaca_towns.population.copy()), cfg)
    for key in plain:
        np.testing.assert_array_equal(plain[key], same[key], err_msg=key)
    rng = np.random.default_rng(7)
    jobs = oaxaca_towns.population * rng.uniform(0.2, 2.0, len(oaxaca_towns))
    other = dataclasses.replace(oaxaca_towns, mass=jobs)
    kernel = kernels_one(other, cfg)
    assert not np.array_equal(kernel["share"], plain["share"])
    for m, mode in enumerate(("commute", "freight")):
        compare(kernel, reference_one(other, cfg, mode, mass=jobs), m, cfg.mode(mode))


def _agglo(*args, cwd):
    return subprocess.run([sys.executable, "-m", "agglo", *args], cwd=cwd, capture_output=True, text=True)


def _table(tmp_path, mass):
    frame = pd.DataFrame(
        {
            "town_id": [1, 2, 3],
            "name": ["a", "b", "c"],
            "lat": [17.0, 17.1, 17.2],
            "lon": [-96.7, -96.7, -96.7],
            "population": [200000.0, 3000.0, 4000.0],
            "mass": mass,
        }
    )
    path = tmp_path / "towns.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("bad", ["0", "-3", "abc", ""])
def test_a_bad_mass_is_one_line_exit_2(tmp_path, bad):
    path = _table(tmp_path, ["90000", bad, "100"])
    got = _agglo("run", "data.source=table", f"data.path={path}", f"store.path={tmp_path / 'c.zarr'}", cwd=tmp_path)
    assert got.returncode == 2, got.stderr
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1 and "row 3" in lines[0] and "mass" in lines[0] and "> 0" in lines[0], got.stderr
    assert not (tmp_path / "c.zarr").exists()


def test_a_mass_with_another_model_is_refused(tmp_path):
    path = _table(tmp_path, [90000.0, 100.0, 100.0])
    store = tmp_path / "c.zarr"
    got = _agglo(
        "run", "data.source=table", f"data.path={path}", "commute.model=gravity,doubly", f"store.path={store}",
        cwd=tmp_path,
    )  # fmt: skip
    assert got.returncode == 2, got.stderr
    line = got.stderr.strip()
    assert "\n" not in line and "'mass'" in line and "commute.model = doubly" in line, line
    assert not store.exists()
    flows = _agglo(
        "flows", "data.source=table", f"data.path={path}", "freight.model=radiation", "--out", "f.csv", cwd=tmp_path
    )
    assert flows.returncode == 2 and "freight.model = radiation" in flows.stderr, flows.stderr


def test_a_mixed_batch_with_a_destination_mass_equals_the_twin():
    """The batched branches (every scenario of a batch at once) with a mass column."""
    from agglo.engine.data.towns import synthetic
    from tests.test_kernels import check_mixed_sweep

    towns = synthetic(300, 5)
    jobs = towns.population * np.random.default_rng(3).uniform(0.1, 3.0, len(towns))
    check_mixed_sweep(dataclasses.replace(towns, mass=jobs))
