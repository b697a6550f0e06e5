"""The local Dask cluster the engine starts, or the scheduler it connects to: the shape
of the cluster a machine gets, when ``executor.kind=auto`` starts one, TLS, and the
start-up in a thread while the driver reads the towns and builds the network
(:class:`LocalStart`). The sweep on it: :mod:`~agglo.engine.executors.dask`."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

from agglo.engine.errors import UserError
from agglo.engine.executors.interrupts import check


@contextlib.contextmanager
def _quiet_distributed():
    """No raw ``distributed`` log lines on the driver's stderr: what matters is reported
    by the run in one line."""
    names = ["distributed"] + [n for n in logging.Logger.manager.loggerDict if n.startswith("distributed.")]
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def local_shape(cfg) -> tuple[int, int]:
    """(workers, threads per worker) of the engine's local cluster: the config's, else
    one worker per two cores with two threads each (one on a machine of one core);
    see docs/executors.md for the measurements behind it."""
    cores = os.cpu_count() or 1
    threads = cfg.threads_per_worker or (1 if cores < 2 else 2)
    workers = cfg.n_workers or max(1, cores // threads)
    return workers, threads


def chosen_kind(cfg) -> str:
    """``executor.kind``, with ``auto`` made ``local`` where the local cluster has at
    least two worker processes, else ``synchronous``: one worker process computes
    what the driver would, with its own start-up on top (see docs/executors.md)."""
    if cfg.kind != "auto":
        return cfg.kind
    return "local" if local_shape(cfg)[0] >= 2 else "synchronous"


def deferred(cfg) -> bool:
    """Whether the local cluster waits for the sweep's pace (``auto``; see
    :func:`_driver_first`) instead of starting with the run."""
    return cfg.kind == "local" and cfg.compute_while_starting and cfg.cluster_pays_s > 0


def _security(cfg):
    if not cfg.security.ca_file:
        return None
    from distributed.security import Security

    return Security(
        tls_ca_file=cfg.security.ca_file,
        tls_client_cert=cfg.security.cert_file,
        tls_client_key=cfg.security.key_file,
        require_encryption=True,
    )


def _connect(cfg):
    from distributed import Client

    try:
        return Client(cfg.address, timeout="10s", security=_security(cfg))
    except Exception as exc:  # noqa: BLE001 - unreachable or refused scheduler
        raise UserError(
            f"executor.address = {cfg.address!r}: cannot connect ({exc}); allowed: a running scheduler's address"
        ) from None


def check_address(cfg) -> None:
    """Fail early (before any store is written) when the scheduler cannot be reached."""
    if cfg.kind != "address":
        return
    _connect(cfg).close()


def _forkserver() -> None:
    """Worker processes forked from a server that has imported Dask and the engine, and
    that ignores SIGINT (its children inherit that): a terminal's Ctrl-C, sent to the whole
    process group, reaches only the driver, which stops and closes the cluster itself
    instead of every worker printing a traceback. A signal mask would not do: a spawned
    process starts with none. Started from the main thread (only there can Python set a
    signal's disposition), with SIGINT ignored just while the server is spawned."""
    import multiprocessing
    from multiprocessing import forkserver

    import dask
    import distributed.utils

    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    if not getattr(distributed.utils, "_forkserver_preload_set", True):
        multiprocessing.get_context("forkserver").set_forkserver_preload(
            ["distributed", "agglo.engine.executors.graph"]
        )
        distributed.utils._forkserver_preload_set = True
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


class _MainHidden:
    """While the engine's cluster lives, the driver's ``__main__`` module does not name its
    file: a worker process then does not run the script that started the driver (Python
    runs it in every new process of the forkserver and spawn methods, which re-ran
    ``agglo.run(...)`` of a script without an ``if __name__ == "__main__":`` guard in each
    worker). The workers need nothing of it: their tasks are the engine's functions."""

    def __init__(self):
        self.main = sys.modules.get("__main__")
        self.saved = {k: self.main.__dict__[k] for k in ("__file__", "__spec__") if k in vars(self.main)}
        if "__file__" in self.saved:
            del self.main.__file__
        self.main.__spec__ = None

    def restore(self) -> None:
        if self.main is not None:
            vars(self.main).pop("__spec__", None)
            vars(self.main).update(self.saved)
            self.main = None


class LocalStart:
    """The engine's LocalCluster, started in a thread of its own (see :func:`_forkserver`
    for how its workers keep out of Ctrl-C, :class:`_MainHidden` for how they keep out of
    the driver's script)."""

    def __init__(self, cfg):
        self._hidden = _MainHidden()
        _forkserver()
        self.cfg = cfg
        self.shape = local_shape(cfg)
        self.cluster = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.ready_s: float | None = None
        self.ready_at: float | None = None  # wall clock, for the benchmark's timeline
        self._thread = threading.Thread(target=self._start, daemon=True, name="agglo-cluster-start")
        self._thread.start()

    def _start(self) -> None:
        from distributed import LocalCluster

        workers, threads = self.shape
        try:
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads,
                memory_limit=self.cfg.memory_limit,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                processes=True,
                silence_logs=logging.CRITICAL,  # what ends a task reaches the driver, which says it in one line
                preload=["agglo.engine.executors.warm"],
            )
            self.ready_s = time.perf_counter() - self.started
            self.ready_at = time.time()
        except BaseException as exc:  # noqa: BLE001 - raised in the driver by get()
            self.error = exc

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def get(self):
        while self._thread.is_alive():
            self._thread.join(0.2)
            check()  # Ctrl-C while the cluster starts
        if self.error is not None:
            raise UserError(f"executor.kind = 'local': the local Dask cluster did not start ({self.error})")
        return self.cluster

    def close(self, wait: bool = True) -> None:
        """Close the cluster; with ``wait`` False in a thread of its own (the process still
        waits for it before exiting), so that a finished run shows its summary meanwhile."""
        if not wait:
            threading.Thread(target=self.close, name="agglo-cluster-close").start()
            return
        self._thread.join()
        if self.cluster is not None:
            with _quiet_distributed(), contextlib.suppress(Exception):
                self.cluster.close()
        self._hidden.restore()


def start(cfg) -> LocalStart | None:
    """Start the engine's local cluster now (in a thread), or None for other executors."""
    return LocalStart(cfg) if cfg.kind == "local" else None


def describe(cfg, started: LocalStart | None) -> str:
    """The executor's shape, printed before the sweep."""
    shape = _shape(cfg, started)
    return shape + ("; gravity passes on the GPU (executor.device=cuda)" if cfg.device == "cuda" else "")


def _shape(cfg, started: LocalStart | None) -> str:
    if cfg.kind == "synchronous":
        import numba

        return f"executor: in this process, {numba.get_num_threads()} Numba thread(s) on {os.cpu_count()} cores"
    if cfg.kind == "local":
        workers, threads = started.shape if started else local_shape(cfg)
        if started is None and deferred(cfg):
            import numba

            return (
                f"executor: this process first ({numba.get_num_threads()} Numba thread(s) on {os.cpu_count()} "
                f"cores); a local Dask cluster of {workers} worker process(es) x {threads} thread(s) joins "
                f"if the sweep has more than {cfg.cluster_pays_s:g} s left"
            )
        return (
            f"executor: local Dask cluster, {workers} worker process(es) x {threads} thread(s) "
            f"on {os.cpu_count()} cores"
        )
    return f"executor: the Dask scheduler at {cfg.address}"
