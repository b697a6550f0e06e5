"""Dask execution: a LocalCluster the engine starts, or an existing scheduler.

The towns and their neighbourhood reach every worker once. On the engine's own
LocalCluster (one machine) every worker maps them from ``.npy`` files: the run's entry in
the network cache (:mod:`agglo.engine.netcache`), else a copy spilled to a temporary
folder (:func:`agglo.engine.network.spill`); no pickling, one copy of the pages for all
workers (all of Mexico at a 330-min freight cap: 859 MB, scattered in 5.9 s before). Workers of an existing scheduler, possibly on other machines, get the network
scattered (``broadcast=True``). Each task computes one batch and writes its own region of
the store, so the driver never holds the cube.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile

from agglo.engine.errors import UserError
from agglo.engine.executors.task import run_batch
from agglo.engine.interrupts import check
from agglo.engine.lease import LeaseLost
from agglo.engine.network import spill


def _client(cfg):
    from distributed import Client, LocalCluster

    if cfg.kind == "address":
        security = None
        if cfg.security.ca_file:
            from distributed.security import Security

            security = Security(
                tls_ca_file=cfg.security.ca_file,
                tls_client_cert=cfg.security.cert_file,
                tls_client_key=cfg.security.key_file,
                require_encryption=True,
            )
        try:
            return Client(cfg.address, timeout="10s", security=security), None
        except Exception as exc:  # noqa: BLE001 - unreachable or refused scheduler
            raise UserError(
                f"executor.address = {cfg.address!r}: cannot connect ({exc}); allowed: a running scheduler's address"
            ) from None
    n_workers = cfg.n_workers or max(1, os.cpu_count() or 1)
    # Ctrl-C reaches the whole process group. The nannies and workers are started with
    # SIGINT ignored (inherited through their exec), so only the driver hears it: it stops
    # and closes the cluster itself, instead of every worker printing a traceback.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            processes=True,
            silence_logs=logging.ERROR,  # not the workers' warnings about tasks cancelled on Ctrl-C
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    return Client(cluster), cluster


def check_address(cfg) -> None:
    """Fail early (before any store is written) when the scheduler cannot be reached."""
    if cfg.kind != "address":
        return
    client, _ = _client(cfg)
    client.close()


def run_batches(network, job, batches, progress, executor_config, files=None):
    """``files``: the network's entry in the on-disk cache (:mod:`agglo.engine.netcache`),
    which the engine's own workers map instead of a spilled copy."""
    from dataclasses import replace

    from distributed import as_completed

    client, cluster = _client(executor_config)
    stack = contextlib.ExitStack()  # the spilled network's folder, removed after the cluster
    try:
        if client.dashboard_link and not progress.quiet:
            print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
        job = replace(job, threads=executor_config.threads_per_worker)
        if cluster is not None and files is not None:  # our own workers map the cached files
            network = files
        elif cluster is not None:  # our own workers, on this machine
            spilled = stack.enter_context(tempfile.TemporaryDirectory(prefix="agglo-network-"))
            try:
                network = spill(network, spilled)
            except OSError as exc:  # no room in the temporary folder: send it to the workers instead
                print(f"network not spilled to {spilled} ({exc.strerror}); sending it to the workers", file=sys.stderr)
        network_f = client.scatter(network, broadcast=True)
        job_f = client.scatter(job, broadcast=True)
        futures = [client.submit(run_batch, network_f, job_f, b, pure=False) for b in batches]
        for future in as_completed(futures):
            _, size, lost = future.result()
            if lost:
                raise LeaseLost(lost)  # the other batches are cancelled as the client closes
            progress.update(size)
            future.release()
            check()  # Ctrl-C: stop here; the other batches are cancelled, none half-marked
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
        stack.close()
