"""Dask execution: a LocalCluster the engine starts, or the workers of an existing scheduler.

What a worker gets is the recipe of the network (:mod:`agglo.engine.network.recipe`), never the
network: each worker process maps it from its machine's network cache, from a copy the
driver wrote where it can read it, or builds it (the same bits). Tasks carry the recipe,
the run's settings and one piece of work: a few kilobytes each. The sweep is a graph
(:mod:`agglo.engine.executors.graph`): each mode's distinct scenarios computed once, in
pieces spread over the workers, and each batch gathered, written and marked by its own
task. Dask recomputes what a lost worker held, and a worker that joins mid-sweep picks
up work, so replacing dead workers lets a run go on.

The local cluster starts in a thread while the driver reads the towns and builds the
network (:class:`LocalStart`); its worker processes import the engine and load the
kernels as they start (:mod:`agglo.engine.executors.warm`). A worker's threads are Numba
threads: one piece at a time per worker, on all of them.

Losing the scheduler, or every worker for ``executor.worker_timeout_s``, ends the run
with one line (:class:`ExecutorLost`, exit 1); what was written is kept and marked, so
the same command resumes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import uuid

from agglo.engine.errors import UserError
from agglo.engine.executors.cluster import LocalStart, _connect, _quiet_distributed, deferred
from agglo.engine.executors.graph import plan_work, run_assemble, run_piece
from agglo.engine.executors.interrupts import check
from agglo.engine.network.recipe import NetworkUnavailable
from agglo.engine.store.lease import LeaseLost


class ExecutorLost(UserError):
    """The scheduler or every worker went away mid-sweep; the store is resumable."""

    exit_code = 1


def _copy_for_workers(network, folder: str):
    """A checked copy of the network (a network-cache entry with its manifest) in ``folder``."""
    from pathlib import Path

    from agglo.engine.network.cache import write_entry

    handle = write_entry(network, Path(folder) / ".writing", Path(folder) / "network")
    return None if handle is None else handle.folder


def run_batches(network, job, batches, progress, executor_config, recipe, started=None, files=None):
    """Run ``batches`` of ``job`` on Dask. ``recipe`` (:class:`agglo.engine.network.recipe.Recipe`)
    is what workers get instead of ``network``; ``started``: the local cluster started
    earlier by :func:`start`; ``files``: the network's entry in this machine's cache."""
    from dataclasses import replace

    cfg = executor_config
    given = [started]
    stack = contextlib.ExitStack()
    with _quiet_distributed():
        try:
            if cfg.kind == "local":
                from distributed import Client

                if started is None and not deferred(cfg):
                    started = LocalStart(cfg)
                if cfg.compute_while_starting:
                    started, batches = _driver_first(started, cfg, network, job, batches, progress)
                if started is not None and started not in given:
                    stack.callback(started.close)
                if not batches:
                    return
                client = Client(started.get(), timeout="30s")
                workers = started.shape[0]
                if files is not None:  # the driver's cache entry, checked or written by it in this run
                    recipe = replace(recipe, copy=files.folder, copy_checked=True)
                else:  # not cached: a copy in a temporary folder
                    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="agglo-network-"))
                    recipe = replace(recipe, copy=_copy_for_workers(network, folder), copy_checked=True)
            else:
                client = _connect(cfg)
                workers = max(1, len(client.scheduler_info().get("workers", {})))
                if cfg.network_beside_store:
                    folder = stack.enter_context(_beside(job.store_path))
                    recipe = replace(recipe, copy=_copy_for_workers(network, folder))
            stack.callback(_close_client, client)
            if client.dashboard_link and not progress.quiet:
                print(f"dask dashboard: {client.dashboard_link}", file=sys.stderr)
            job = replace(job, threads=None)
            timeline = {"cluster_ready_at": started.ready_at if cfg.kind == "local" else None}
            _sweep(client, network, job, batches, progress, cfg, recipe, workers, timeline)
        finally:
            stack.close()


HANDOFF_S = 5.0  # see _driver_first


def _driver_first(started: LocalStart | None, cfg, network, job, batches: list, progress):
    """Compute batches in the driver, as the synchronous executor does, until the local
    cluster is up, and on while the batches left would take the driver alone less than
    ``HANDOFF_S`` at the pace of its last batch: a fresh cluster's first round costs a few
    seconds (each worker maps the network and loads the kernels; about 3 s on 16 cores),
    which a short remainder does not win back. With ``started`` None (``auto``) the cluster
    is started only once that pace says more than ``executor.cluster_pays_s`` is left: a
    cluster booting takes CPU from the driver, which a short sweep never wins back.
    Returns the cluster (None if it was never needed) and the batches left for it."""
    from agglo.engine.executors.synchronous import run_one

    left = list(batches)
    last = None
    while left:
        if started is None and last is not None and last * len(left) > cfg.cluster_pays_s:
            started = LocalStart(cfg)
        if started is not None and started.ready() and (last is None or last * len(left) > HANDOFF_S):
            break
        t = time.perf_counter()
        run_one(network, job, left.pop(0), progress)
        last = time.perf_counter() - t
    return started, left


@contextlib.contextmanager
def _beside(store_path: str):
    """A folder next to the store (``STORE.network``) for workers that share its file
    system, removed when the run ends."""
    import shutil

    folder = f"{store_path.rstrip('/')}.network"
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _close_client(client) -> None:
    with contextlib.suppress(Exception):
        client.close(timeout=5)


def _sweep(client, network, job, batches, progress, cfg, recipe, workers: int, timeline: dict) -> None:
    from distributed import wait

    from agglo.engine.executors.warm import Warm

    work = plan_work(network, job, batches, workers)
    if cfg.kind == "address":  # the engine's own workers warmed up as they started (preload)
        client.register_plugin(Warm(recipe, job), name=Warm.name)
    run = uuid.uuid4().hex[:12]
    pieces = [
        client.submit(run_piece, recipe, job, piece, key=f"agglo-piece-{i}-{run}")
        for i, piece in enumerate(work.pieces)
    ]
    pending = set()
    sizes = {}
    for b in batches:
        needs = work.needs(b)
        future = client.submit(
            run_assemble, job, b, work.rows[b], needs, *[pieces[i] for i in needs], key=f"agglo-batch-{b}-{run}"
        )
        pending.add(future)
        sizes[future.key] = b
    del pieces  # held by the scheduler while a batch needs them
    submitted = time.perf_counter()
    timeline["submitted_at"] = time.time()
    first_s = None
    alone_since = None
    while pending:
        try:
            done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        except Exception:  # noqa: BLE001 - a lost scheduler cancels every future
            if client_gone(client) or all(f.status == "cancelled" for f in pending):
                raise _lost_scheduler(cfg) from None
            raise
        progressed = False
        for future in done:
            # "lost": it finished (the batch is written and marked), then its worker died
            if future.status not in ("finished", "lost"):
                _failed(future, cfg)  # raises, in one line
            progress.update(job.plan.batch_size(sizes[future.key]))  # no gather: a result that
            future.release()  # died with its worker would be computed again and waited for
            progressed = True
            first_s = first_s if first_s is not None else time.perf_counter() - submitted
        check()  # Ctrl-C: stop here; the other batches are cancelled, none half-marked
        alone_since = None if progressed else _watch(client, cfg, alone_since, progress)
    timeline.update(pieces=len(work.pieces), batches=len(batches), first_batch_after_s=first_s, done_at=time.time())
    _stats(client, timeline)


def _lost_scheduler(cfg) -> ExecutorLost:
    where = f"the scheduler at {cfg.address}" if cfg.kind == "address" else "the local Dask scheduler"
    return ExecutorLost(
        f"executor: lost {where} mid-sweep; the batches written so far are kept and marked done: "
        "run the same command again to resume"
    )


def _failed(future, cfg):
    """Raise what ended a batch task (an error or a cancellation), in one line."""
    from distributed.scheduler import KilledWorker

    if future.status == "cancelled":
        if client_gone(future.client):
            raise _lost_scheduler(cfg)
        raise ExecutorLost(
            "executor: a batch task was cancelled; the batches written so far are kept: run the same command again to resume"
        )
    exc = future.exception()
    if not isinstance(exc, BaseException):  # no error recorded: a task Dask gave up on
        raise ExecutorLost(
            f"executor: a batch task ended {future.status!r} without an error; the batches written so far "
            "are kept: run the same command again to resume"
        )
    if isinstance(exc, NetworkUnavailable):
        raise UserError(str(exc)) from None
    if isinstance(exc, LeaseLost):
        raise LeaseLost(str(exc)) from None  # the other batches are cancelled as the client closes
    if isinstance(exc, KilledWorker):
        raise ExecutorLost(
            f"executor: {exc.task} was running on a worker each time one died ({exc.last_worker.address if exc.last_worker else 'unknown'} last); "
            "the batches written so far are kept: run the same command again to resume"
        ) from None
    raise exc


def client_gone(client) -> bool:
    return client.status not in ("running", "newly-created")


def _watch(client, cfg, alone_since, progress):
    """Between results: the scheduler must answer, and some worker must come back within
    ``executor.worker_timeout_s`` once all have gone. Returns when the workers went."""
    if client_gone(client):
        raise _lost_scheduler(cfg)
    if client.scheduler_info().get("workers"):
        return None
    now = time.monotonic()
    if alone_since is None:
        if not progress.quiet:
            print(
                f"executor: no worker left; waiting up to {cfg.worker_timeout_s:g} s for workers to join",
                file=sys.stderr,
            )
        return now
    if now - alone_since > cfg.worker_timeout_s:
        raise ExecutorLost(
            f"executor: every worker was lost and none joined within executor.worker_timeout_s = "
            f"{cfg.worker_timeout_s:g} s; the batches written so far are kept: run the same command again to resume"
        )
    return alone_since


def _stats(client, stats: dict) -> None:
    """Dask's own accounting of the sweep, written as JSON to the file named by
    ``AGGLO_EXECUTOR_STATS`` (the scale benchmark reads it): the bytes the scheduler sent
    each worker (task specs and their arguments: all that comes from the driver), the
    bytes each worker fetched from the others (the pieces a batch gathers), and the
    compute seconds of each kind of task."""
    path = os.environ.get("AGGLO_EXECUTOR_STATS")
    if not path:
        return

    def sent(dask_scheduler):
        return {address: comm.byte_count for address, comm in dask_scheduler.stream_comms.items()}

    def computed(dask_scheduler):
        return {
            name: dict(prefix.all_durations)
            for name, prefix in dask_scheduler.task_prefixes.items()
            if name.startswith("agglo-")
        }

    def fetched(dask_worker):
        return sum(entry.get("total", 0) for entry in dask_worker.transfer_incoming_log)

    try:
        stats.update(
            from_scheduler=client.run_on_scheduler(sent),
            durations=client.run_on_scheduler(computed),
            from_workers=client.run(fetched),
            threads=sum(client.nthreads().values()),
        )
    except Exception as exc:  # noqa: BLE001 - statistics only
        stats["error"] = str(exc)
    with open(path, "w") as f:
        json.dump(stats, f)
