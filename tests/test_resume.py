"""Sweeps that survive interruption: SIGKILL the driver or a worker, resume, same cube."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from agglo.engine.store.layout import VARIABLES
from agglo.engine.store.lease import lease_path
from agglo.engine.store.reading import batch_done
from tests.conftest import SMALL, cube_arrays

SLOW_SWEEP = [
    "experiment=synthetic",
    "data.n=2500",
    "cores.min_population=20000",
    "commute.cap_min=range(10,130,2)",
    "freight.beta=0.5,1.0",
    "executor.batch_size=2",
    "executor.kind=synchronous",
]


def _chunk_mtimes(path):
    return {str(p): p.stat().st_mtime_ns for p in (path / "c").rglob("*") if p.is_file()}


def _wait_for_batches(store, at_least, proc, limit_s=180):
    deadline = time.time() + limit_s
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run ended before it could be interrupted: {proc.stderr.read()}")
        try:
            if (store / "progress").exists() and batch_done(str(store)).sum() >= at_least:
                return
        except Exception:  # noqa: BLE001 - store still being created
            pass
        time.sleep(0.05)
    pytest.fail("no batch finished in time")


def test_driver_sigkill_then_resume_equals_clean_run(tmp_path, run_cli):
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *SLOW_SWEEP, f"store.path={store}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_batches(store, 5, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = batch_done(str(store))
    assert 0 < done.sum() < done.size, "the kill must land mid-run"
    assert Path(lease_path(str(store))).exists(), "a SIGKILLed holder leaves its lease"
    before = _chunk_mtimes(store / "core")
    code, _, err = run_cli("run", *SLOW_SWEEP, f"store.path={store}")
    assert code == 0, err
    # The stale lease (its holder is no longer running on this host) is taken over, with a message.
    assert "taking over the writer lease of agglo run" in err and f"process {proc.pid} is not running" in err, err
    assert not Path(lease_path(str(store))).exists(), "the lease is given back when the run ends"
    missing = int((~done).sum())
    assert f"({missing} left to compute)" in err  # exactly the batches not marked done
    assert batch_done(str(store)).all()
    # Chunks of batches finished before the kill were not written again.
    after = _chunk_mtimes(store / "core")
    untouched = [k for k, v in before.items() if after.get(k) == v]
    assert len(before) >= int(done.sum()) and len(untouched) >= int(done.sum())
    clean = tmp_path / "clean.zarr"
    assert run_cli("run", *SLOW_SWEEP, f"store.path={clean}", "--quiet")[0] == 0
    a, b = cube_arrays(store), cube_arrays(clean)
    for name in VARIABLES:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


@pytest.mark.slow
@pytest.mark.distributed
def test_worker_sigkill_mid_sweep_still_gives_the_clean_cube(tmp_path, run_cli):
    from tests.test_distributed import start_cluster, stop_cluster

    address, procs = start_cluster(tmp_path)
    try:
        store = tmp_path / "worker-killed.zarr"
        args = [a for a in SLOW_SWEEP if not a.startswith("executor.kind")]
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agglo.cli",
                "run",
                *args,
                "executor.kind=address",
                f"executor.address={address}",
                f"store.path={store}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _wait_for_batches(store, 3, driver)
        os.killpg(procs[1].pid, signal.SIGKILL)  # one of the two workers
        out, err = driver.communicate(timeout=300)
        assert driver.returncode == 0, err
    finally:
        stop_cluster(procs)
    assert batch_done(str(store)).all()
    clean = tmp_path / "clean.zarr"
    assert run_cli("run", *SLOW_SWEEP, f"store.path={clean}", "--quiet")[0] == 0
    a, b = cube_arrays(store), cube_arrays(clean)
    for name in VARIABLES:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


def test_sobol_512_over_four_keys(tmp_path, run_cli):
    from SALib.sample import sobol

    store = tmp_path / "sobol.zarr"
    bounds = "{commute.cap_min:[15,90],commute.beta:[1,3],freight.cap_min:[120,360],freight.threshold:[0.05,0.3]}"
    code, _, err = run_cli(
        "run",
        *SMALL,
        "data.n=60",
        "sweep.grid={}",
        "sweep.sampler=sobol",
        "sweep.n=512",
        "sweep.seed=7",
        f"sweep.bounds={bounds}",
        "executor.batch_size=512",
        f"store.path={store}",
        "--quiet",
    )
    assert code == 0, err
    ds = xr.open_zarr(store)
    names = ["commute.cap_min", "commute.beta", "freight.cap_min", "freight.threshold"]
    want = sobol.sample(
        {"num_vars": 4, "names": names, "bounds": [[15, 90], [1, 3], [120, 360], [0.05, 0.3]]},
        512,
        calc_second_order=True,
        seed=7,
    )
    assert ds.sizes["sample"] == 512 * 10 and ds.coverage.dims == ("sample", "mode")
    for q, name in enumerate(names):
        assert ds[name].dims == ("sample",)
        np.testing.assert_array_equal(ds[name].values, want[:, q])


def test_scenario_table(tmp_path, run_cli):
    table = tmp_path / "scenarios.csv"
    table.write_text(
        "commute.cap_min,borders,freight.decay,freight.beta\n30,open,power,1.0\n60,closed,exponential,0.02\n"
    )
    store = tmp_path / "table.zarr"
    code, out, err = run_cli("run", *SMALL, "sweep.grid={}", f"sweep.table={table}", f"store.path={store}", "--quiet")
    assert code == 0, err
    ds = xr.open_zarr(store)
    assert ds.coverage.dims == ("scenario", "mode")
    assert ds["borders"].values.tolist() == ["open", "closed"]
    grid = tmp_path / "grid.zarr"
    code, _, err = run_cli(
        "run",
        *SMALL,
        "commute.cap_min=60",
        "borders=closed",
        "freight.decay=exponential",
        "freight.beta=0.02",
        f"store.path={grid}",
        "--quiet",
    )
    assert code == 0, err
    np.testing.assert_array_equal(ds.core.isel(scenario=1).values, xr.open_zarr(grid).core.values)
    bad = tmp_path / "bad.csv"
    bad.write_text("commute.cap_min,data.country\n30,MX\n")
    code, _, err = run_cli("run", *SMALL, "sweep.grid={}", f"sweep.table={bad}", f"store.path={tmp_path / 'b.zarr'}")
    assert code == 2 and "data.country" in err and "cannot be swept" in err
