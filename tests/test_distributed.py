"""A sweep on a real `dask scheduler` and two `dask worker` processes on 127.0.0.1."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from agglo.engine.store.layout import VARIABLES
from agglo.engine.store.reading import batch_done
from benchmarks.bench_executors import stop as stop_cluster
from tests.conftest import SMALL

pytestmark = pytest.mark.distributed
DASK = str(Path(sys.executable).with_name("dask"))


def start_cluster(tmp_path, tls: list[str] | None = None, security=None, workers: int = 2):
    """A real `dask scheduler` and ``workers`` `dask worker` processes on 127.0.0.1 (each
    its own process group). Returns (address, processes); processes[1:] are the workers."""
    file = tmp_path / "scheduler.json"
    env = dict(os.environ)
    tls = tls or []
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True, "env": env}
    procs = [
        subprocess.Popen(
            [
                DASK,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(file),
                *tls,
            ],
            **quiet,
        )
    ]
    try:
        deadline = time.time() + 60
        while not file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        procs += [start_worker(file, tls) for _ in range(workers)]
        from distributed import Client

        if workers:
            with Client(address, timeout="30s", security=security) as client:
                client.wait_for_workers(workers, timeout=90)
    except BaseException:
        stop_cluster(procs)
        raise
    return address, procs


def start_worker(file, tls=(), env=None, prefix=()):
    """One `dask worker` process of the scheduler in ``file`` (its own process group);
    ``prefix`` runs it under another command (a private mount namespace, say)."""
    command = [DASK, "worker", "--scheduler-file", str(file), "--nthreads", "1", "--nworkers", "1"]
    command += ["--no-dashboard", "--host", "127.0.0.1", *tls]
    return subprocess.Popen(
        [*prefix, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env=env or dict(os.environ),
    )


def wait_for_workers(address, n):
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(n, timeout=90)


@pytest.fixture
def scheduler(tmp_path):
    address, procs = start_cluster(tmp_path)
    try:
        yield address
    finally:
        stop_cluster(procs)


def test_address_executor_equals_synchronous(scheduler, tmp_path, run_cli):
    sweep = ["commute.cap_min=20,45,60,90", "freight.beta=0.5,1.0,2.0", "executor.batch_size=3"]
    remote = tmp_path / "remote.zarr"
    local = tmp_path / "sync.zarr"
    code, _, err = run_cli(
        "run",
        *SMALL,
        *sweep,
        "executor.kind=address",
        f"executor.address={scheduler}",
        f"store.path={remote}",
        "--quiet",
    )
    assert code == 0, err
    code, _, err = run_cli("run", *SMALL, *sweep, f"store.path={local}", "--quiet")
    assert code == 0, err
    a, b = xr.open_zarr(remote), xr.open_zarr(local)
    for name in VARIABLES:
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


def test_unreachable_scheduler_is_a_user_error(tmp_path, run_cli):
    code, _, err = run_cli(
        "run",
        *SMALL,
        "executor.kind=address",
        "executor.address=tcp://127.0.0.1:9",
        f"store.path={tmp_path / 'x.zarr'}",
        "--quiet",
    )
    assert code == 2 and "executor.address" in err
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make test certificates")
def test_tls_scheduler_with_executor_security(tmp_path, run_cli):
    """A scheduler that only speaks TLS: reached with executor.security's CA, certificate and key."""
    from distributed.security import Security

    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "node.key", "node.csr", "node.pem"))
    ssl = lambda *a: subprocess.run(["openssl", *map(str, a)], check=True, capture_output=True)  # noqa: E731
    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        ca_key,
        "-out",
        ca,
        "-days",
        "2",
        "-subj",
        "/CN=agglo-test-ca",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = tmp_path / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-out",
        cert,
        "-days",
        "2",
        "-extfile",
        ext,
    )
    tls = ["--protocol", "tls", "--tls-ca-file", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    security = Security(
        tls_ca_file=str(ca), tls_client_cert=str(cert), tls_client_key=str(key), require_encryption=True
    )
    address, procs = start_cluster(tmp_path, tls, security)
    try:
        assert address.startswith("tls://")
        store = tmp_path / "tls.zarr"
        code, _, err = run_cli(
            "run",
            *SMALL,
            "commute.cap_min=30,60",
            "executor.kind=address",
            f"executor.address={address}",
            f"executor.security.ca_file={ca}",
            f"executor.security.cert_file={cert}",
            f"executor.security.key_file={key}",
            f"store.path={store}",
            "--quiet",
        )
        assert code == 0, err
        assert batch_done(str(store)).all()
        code, _, err = run_cli(
            "run",
            *SMALL,
            "executor.kind=address",
            f"executor.address={address}",
            f"executor.security.ca_file={ca}",
            f"store.path={tmp_path / 'no.zarr'}",
        )
        assert code == 2 and "executor.security.cert_file" in err
    finally:
        stop_cluster(procs)


# A sweep of 30 batches that takes some seconds on two single-thread workers.
KILL_SWEEP = [
    "experiment=synthetic",
    "data.n=2000",
    "cores.min_population=20000",
    "commute.cap_min=range(10,130,4)",
    "freight.beta=0.5,1.0",
    "executor.batch_size=2",
]


def _driver(address, store, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *KILL_SWEEP, "executor.kind=address",
         f"executor.address={address}", f"store.path={store}", "--quiet", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ),
    )  # fmt: skip


def _assert_clean(store, tmp_path, run_cli):
    """``store`` resumed (synchronously) equals a clean synchronous run, bit for bit."""
    from tests.conftest import cube_arrays

    sync = [*KILL_SWEEP, "executor.kind=synchronous", "--quiet"]
    code, _, err = run_cli("run", *sync, f"store.path={store}")
    assert code == 0, err
    clean = tmp_path / "clean.zarr"
    assert run_cli("run", *sync, f"store.path={clean}")[0] == 0
    a, b = cube_arrays(store), cube_arrays(clean)
    for name in VARIABLES:
        assert np.array_equal(a[name], b[name], equal_nan=True), name


def test_every_worker_killed_and_replaced_mid_sweep_finishes_the_clean_cube(tmp_path, run_cli):
    """Both workers SIGKILLed mid-sweep, two new ones started: the run goes on (what the
    dead held is computed again) and its cube equals the synchronous one; the driver sent
    each worker a recipe, never the network."""
    from tests.test_resume import _wait_for_batches

    address, procs = start_cluster(tmp_path)
    stats = tmp_path / "stats.json"
    try:
        store = tmp_path / "replaced.zarr"
        driver = _driver(address, store, env=dict(os.environ, AGGLO_EXECUTOR_STATS=str(stats)))
        _wait_for_batches(store, 2, driver)
        for p in procs[1:]:
            os.killpg(p.pid, signal.SIGKILL)
        for p in procs[1:]:
            p.wait()
        procs += [start_worker(tmp_path / "scheduler.json") for _ in range(2)]
        _, err = driver.communicate(timeout=300)
        assert driver.returncode == 0, err
        assert "Traceback" not in err, err
        assert batch_done(str(store)).all()
        sent = json.loads(stats.read_text())["from_scheduler"]
    finally:
        stop_cluster(procs)
    assert sent and max(sent.values()) < 2**20, sent  # the network alone is ~15 MB: none of it was sent
    _assert_clean(store, tmp_path, run_cli)


@pytest.mark.parametrize(
    "lost, said",
    [("workers", "every worker was lost"), ("scheduler", "lost the scheduler")],
    ids=["every-worker-for-the-timeout", "the-scheduler"],
)
def test_losing_the_cluster_mid_sweep_is_one_line_and_resumable(lost, said, tmp_path, run_cli):
    """Every worker SIGKILLed and none joining within executor.worker_timeout_s, or the
    scheduler SIGKILLed: exit 1, one line naming what was lost, and the store resumes to
    the clean cube."""
    from tests.test_resume import _wait_for_batches

    address, procs = start_cluster(tmp_path)
    try:
        store = tmp_path / "lost.zarr"
        driver = _driver(address, store, "executor.worker_timeout_s=3")
        _wait_for_batches(store, 2, driver)
        for p in procs[1:] if lost == "workers" else procs[:1]:
            os.killpg(p.pid, signal.SIGKILL)
        _, err = driver.communicate(timeout=120)
    finally:
        stop_cluster(procs)
    assert driver.returncode == 1, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert said in err and "resume" in err, err
    done = batch_done(str(store))
    assert 0 < done.sum() < done.size
    _assert_clean(store, tmp_path, run_cli)


def test_a_worker_that_cannot_obtain_the_network_fails_the_run_in_one_line(tmp_path, run_cli):
    """Workers whose machine cannot read the town table (run in a private mount namespace
    where the table's folder is an empty tmpfs) and whose network cache is empty: one line
    naming the worker and the reason, exit 2, no batch marked done."""
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare --mount (root) to give the workers another view of the disk")
    import pandas as pd

    from agglo.engine.data.towns import synthetic

    tables = tmp_path / "tables"
    tables.mkdir()
    table = tables / "towns.csv"
    synthetic(300, 0).frame().to_csv(table, index=False)
    address, procs = start_cluster(tmp_path, workers=0)
    hidden = f'mount -t tmpfs tmpfs {tables} && exec "$@"'
    env = dict(os.environ, AGGLO_NETWORK_CACHE_DIR=str(tmp_path / "worker-cache"))
    try:
        procs += [
            start_worker(tmp_path / "scheduler.json", env=env, prefix=["unshare", "--mount", "--propagation",
                                                                        "private", "sh", "-c", hidden, "sh"])
            for _ in range(2)
        ]  # fmt: skip
        wait_for_workers(address, 2)
        store = tmp_path / "unreadable.zarr"
        code, _, err = run_cli(
            "run", "data.source=table", f"data.path={table}", "cores.ids=[]", "cores.min_population=5000",
            "commute.cap_min=30,60", "executor.kind=address", f"executor.address={address}",
            f"store.path={store}", "--quiet",
        )  # fmt: skip
    finally:
        stop_cluster(procs)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "worker tcp://127.0.0.1:" in err and "cannot obtain the network" in err and "no such file" in err, err
    assert not batch_done(str(store)).any()
    assert pd.read_csv(table).shape[0] == 300  # the driver's table itself is untouched


def test_pieces_give_every_worker_work_and_each_distinct_scenario_once():
    """plan_work: a sweep smaller than one batch is cut so that each of four workers has
    pieces; a mode scenario repeated across batches is in exactly one piece."""
    from agglo.engine.config.compose import resolve
    from agglo.engine.data.load import load_towns
    from agglo.engine.executors.graph import plan_work
    from agglo.engine.executors.task import Job
    from agglo.engine.network.build import forced_cores, prepare
    from agglo.engine.planning.plan import make_plan
    from agglo.engine.planning.scenarios import batch_parameters, reach_radii

    over = [*SMALL, "commute.cap_min=20,30,40,50,60", "freight.cap_min=100,200,300,400,500", "executor.batch_size=25"]
    cfg, omega = resolve(over)
    towns = load_towns(cfg)
    plan = make_plan(omega, 25)
    params = batch_parameters(cfg, plan.scenario_values(None), plan.n_scenarios)
    network = prepare(towns, forced_cores(towns, []), reach_radii(params), 5000.0)
    job = Job(config=cfg, plan=plan, store_path="unused")
    work = plan_work(network, job, [0], workers=4)
    assert plan.n_batches == 1 and len(work.pieces) >= 4
    assert sum(len(p.scenarios) for p in work.pieces) == 10  # 5 distinct per mode, each once
    small = make_plan(omega, 5)
    work = plan_work(network, Job(config=cfg, plan=small, store_path="unused"), list(range(5)), workers=1)
    freight = [p for p in work.pieces if p.mode == "freight"]
    assert sum(len(p.scenarios) for p in freight) == 5 and {p.batch for p in freight} == {0}
    for b in range(5):  # every batch finds each scenario's rows in pieces of its mode
        rows = work.rows[b]
        for m, name in enumerate(("commute", "freight")):
            assert all(work.pieces[p].mode == name for p in rows[:, m, 0])
