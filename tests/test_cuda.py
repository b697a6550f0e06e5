"""The CUDA front (agglo/kernels/cuda.py) in Numba's CUDA simulator: the same kernels a GPU
runs, on the CPU, against the NumPy twin (tests/naive.py) and the CPU kernels, within the
contract the module states."""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agglo.engine.compute.batch import compute_batch
from agglo.engine.network.build import prepare
from agglo.engine.planning.scenarios import batch_parameters, core_mask, reach_radii
from agglo.kernels.cuda import SHARE_RTOL, gravity_passes
from tests.conftest import SMALL
from tests.real_towns import oaxaca_geonames
from tests.strategies import compare, make_config, modes, reference_one, town_tables

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="the simulator's tests")


def cuda_one(towns, cfg) -> dict:
    """One scenario of ``cfg`` through the GPU passes; arrays (2, N) / (2,)."""
    params = batch_parameters(cfg, {}, 1)
    network = prepare(towns, towns.core.copy(), reach_radii(params), core_floor=cfg.cores.min_population)
    out = compute_batch(network, params, device="cuda")
    return {k: v[0] for k, v in out.items()}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    towns=town_tables(max_towns=10),
    commute=modes(),
    freight=modes(),
    closed=st.booleans(),
    core_min=st.sampled_from([0.0, 1000.0, 100000.0]),
)
def test_cuda_passes_equal_the_twin(towns, commute, freight, closed, core_min):
    cfg = make_config(commute, freight, "closed" if closed else "open", core_min)
    got = cuda_one(towns, cfg)
    for m, mode in enumerate(("commute", "freight")):
        compare(got, reference_one(towns, cfg, mode), m, cfg.mode(mode))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    towns=town_tables(max_towns=10),
    masses=st.lists(st.floats(0.5, 5e6), min_size=10, max_size=10),
    commute=modes(),
    freight=modes(),
)
def test_cuda_passes_with_a_destination_mass_equal_the_twin(towns, masses, commute, freight):
    import dataclasses

    towns = dataclasses.replace(towns, mass=np.array(masses[: len(towns)]))
    cfg = make_config(commute, freight, "open", 1000.0)
    got = cuda_one(towns, cfg)
    for m, mode in enumerate(("commute", "freight")):
        compare(got, reference_one(towns, cfg, mode, mass=towns.mass), m, cfg.mode(mode))


@pytest.fixture(scope="module")
def oaxaca_network():
    towns = oaxaca_geonames()
    keep = towns.population >= 4000  # a real system small enough for the simulator
    from agglo.engine.data.towns import from_frame

    towns = from_frame(towns.frame()[keep].reset_index(drop=True), "oaxaca-4000")
    cfg = make_config(dict(cap_min=60.0), dict(cap_min=240.0), core_min=20000.0)
    values = {"commute.cap_min": np.array([30.0, 60.0, 90.0])}
    params = batch_parameters(cfg, values, 3)
    return towns, cfg, params, prepare(towns, towns.core.copy(), reach_radii(params), 20000.0)


@pytest.mark.slow
def test_cuda_equals_the_cpu_kernels_on_real_towns(oaxaca_network):
    towns, _, params, network = oaxaca_network
    assert 40 < len(towns) < 200
    cpu = compute_batch(network, params)
    gpu = compute_batch(network, params, device="cuda")
    np.testing.assert_array_equal(gpu["n_reachable"], cpu["n_reachable"])
    np.testing.assert_array_equal(gpu["core"], cpu["core"])  # no town of these is near a tie
    np.testing.assert_allclose(gpu["share"], cpu["share"], rtol=SHARE_RTOL, equal_nan=True)
    np.testing.assert_allclose(gpu["inflow"], cpu["inflow"], rtol=1e-5)
    np.testing.assert_array_equal(gpu["coverage"], cpu["coverage"])


@pytest.mark.slow
@pytest.mark.parametrize("block", [4, 8])
def test_every_block_width_gives_the_same_results(oaxaca_network, block):
    """The tree reductions in shared memory, at several widths, against one thread a block
    (the widest scenario of the batch: the simulator runs each thread as a Python thread)."""
    from agglo.kernels.records import take

    towns, _, params, network = oaxaca_network
    mode = take(params.mode("commute"), np.array([2]))
    is_core = core_mask(network.population, network.forced_core, params.core_min_population)[2:3]
    params = params.take(np.array([2]))
    one = gravity_passes(network.rows["commute"], network.places, mode, params.closed, is_core, block=1)
    got = gravity_passes(network.rows["commute"], network.places, mode, params.closed, is_core, block=block)
    for name in ("n_reachable", "best_core", "near"):
        np.testing.assert_array_equal(got[name], one[name], err_msg=name)
    for name in ("best_weight", "denominator", "inflow"):
        np.testing.assert_allclose(got[name], one[name], rtol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="power of two"):
        gravity_passes(network.rows["commute"], network.places, mode, params.closed, is_core, block=3)


@pytest.mark.slow
def test_a_run_on_cuda_keeps_the_contract_and_its_device(tmp_path, run_cli):
    sweep = [*SMALL, "data.n=60", "commute.cap_min=30,60", "borders=open,closed"]
    gpu, cpu = tmp_path / "gpu.zarr", tmp_path / "cpu.zarr"
    code, _, err = run_cli("run", *sweep, "executor.device=cuda", f"store.path={gpu}")
    assert code == 0, err
    assert "town assignments computed here lie within 1e-5 of a tie" in err
    assert run_cli("run", *sweep, f"store.path={cpu}", "--quiet")[0] == 0
    a, b = xr.open_zarr(gpu), xr.open_zarr(cpu)
    assert a.attrs["device"] == "cuda" and b.attrs["device"] == "cpu"
    np.testing.assert_array_equal(a.n_reachable.values, b.n_reachable.values)
    np.testing.assert_array_equal(a.core.values, b.core.values)
    np.testing.assert_allclose(a.share.values, b.share.values, rtol=SHARE_RTOL, equal_nan=True)
    # a cube is finished on the device that began it
    code, _, err = run_cli("run", *sweep, f"store.path={gpu}")
    assert code == 2 and "begun with executor.device = 'cuda'" in err and err.count("\n") == 1
    # the GPU runs the gravity model only
    code, _, err = run_cli("run", *sweep, "freight.model=doubly", "executor.device=cuda", f"store.path={tmp_path}/d")
    assert code == 2 and "freight.model = doubly runs on the CPU only" in err


def test_without_a_gpu_cuda_is_refused_in_one_line(tmp_path):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run(
        [sys.executable, "-m", "agglo.cli", "run", *SMALL, "executor.device=cuda", f"store.path={tmp_path}/c"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if "no CUDA GPU here" not in done.stderr:
        pytest.skip("this machine has a GPU")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "allowed: executor.device=cpu" in done.stderr
    assert not (tmp_path / "c").exists()
