"""A sweep on a real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from engine.store import VARIABLES
from tests.conftest import SMALL

pytestmark = pytest.mark.distributed
DASK = str(Path(sys.executable).with_name("dask"))


@pytest.fixture
def scheduler(tmp_path):
    file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        deadline = time.time() + 60
        while not file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([DASK, "worker", "--scheduler-file", str(file), "--nthreads", "1",
                                           "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=90)
        yield address
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def test_address_executor_equals_synchronous(scheduler, tmp_path, run_cli):
    sweep = ["commute.cap_min=20,45,60,90", "freight.beta=0.5,1.0,2.0", "executor.batch_size=3"]
    remote = tmp_path / "remote.zarr"
    local = tmp_path / "sync.zarr"
    code, _, err = run_cli("run", *SMALL, *sweep, "executor.kind=address", f"executor.address={scheduler}",
                           f"store.path={remote}", "--quiet")
    assert code == 0, err
    code, _, err = run_cli("run", *SMALL, *sweep, f"store.path={local}", "--quiet")
    assert code == 0, err
    a, b = xr.open_zarr(remote), xr.open_zarr(local)
    for name in VARIABLES:
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


def test_unreachable_scheduler_is_a_user_error(tmp_path, run_cli):
    code, _, err = run_cli("run", *SMALL, "executor.kind=address", "executor.address=tcp://127.0.0.1:9",
                           f"store.path={tmp_path / 'x.zarr'}", "--quiet")
    assert code == 2 and "executor.address" in err
    assert not (tmp_path / "x.zarr").exists()
