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

from agglo.engine.store import VARIABLES, batch_done
from tests.conftest import SMALL

pytestmark = pytest.mark.distributed
DASK = str(Path(sys.executable).with_name("dask"))


def start_cluster(tmp_path, tls: list[str] | None = None, security=None):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1 (each its own
    process group). Returns (address, processes); processes[1:] are the workers."""
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
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        "--scheduler-file",
                        str(file),
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        *tls,
                    ],
                    **quiet,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s", security=security) as client:
            client.wait_for_workers(2, timeout=90)
    except BaseException:
        stop_cluster(procs)
        raise
    return address, procs


def stop_cluster(procs):
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
