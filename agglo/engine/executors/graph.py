"""A sweep as a Dask graph: pieces of distinct mode scenarios, then batches that gather them.

A scenario's results in one mode depend only on that mode's parameters, the borders and
the cores (:func:`agglo.engine.compute.batch.mode_keys`). A sweep that crosses commuting and
freight values repeats each mode's scenarios many times (the 512-scenario cap sweep of
all of Mexico holds 64 distinct commuting and 8 distinct freight scenarios). The
synchronous executor computes each once through its memo; spread over workers, each with
its own memo, they would be computed once per worker. So the graph computes each distinct
mode scenario once, in a *piece* (:func:`run_piece`: a few distinct scenarios of one mode
of one batch), and each batch's task (:func:`run_assemble`) gathers its scenarios' rows
from the pieces that hold them, writes the batch's region of the store and marks it done.

Pieces are cut small enough that every worker has work (a sweep smaller than one batch
included), never across batches, so a worker that joins mid-sweep picks up what is left
and a lost piece is computed again by Dask. The store's chunks and every bit of the cube
stay what the synchronous executor writes: no pass depends on the other scenarios of its
batch, and the batch's arrays are assembled in the same order.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass

import numpy as np

from agglo.engine.compute.batch import assemble, mode_piece, scenario_digests
from agglo.engine.config.names import MODES
from agglo.engine.executors.task import Job
from agglo.engine.network.recipe import Recipe, obtain
from agglo.engine.planning.scenarios import batch_parameters
from agglo.engine.store.cube import write_batch


@dataclass(frozen=True)
class Piece:
    mode: str
    batch: int
    scenarios: np.ndarray  # indices of distinct scenarios in the batch, ascending


@dataclass(frozen=True)
class Work:
    pieces: list  # [Piece]
    rows: dict  # batch -> int array (S, modes, 2): each scenario's (piece, row in the piece)

    def needs(self, batch: int) -> list[int]:
        """The pieces batch ``batch`` gathers from, ascending."""
        return sorted(set(self.rows[batch][:, :, 0].ravel().tolist()))


def piece_size(distinct: int, workers: int, batch_size: int) -> int:
    """At most this many distinct scenarios a piece: about two pieces a worker, so that
    every worker has work and the slowest piece does not hold up the end, but no more
    pieces than that (a piece's scenarios share each pair's loads in the kernels)."""
    return max(1, min(batch_size, math.ceil(distinct / (2 * max(1, workers)))))


def plan_work(network, job: Job, batches: list[int], workers: int) -> Work:
    """Each mode's distinct scenarios of ``batches`` (in order of first appearance) cut
    into pieces, and where each scenario of each batch finds its rows."""
    groups: list = []  # [mode, batch, [scenario]] per mode per batch that brings new keys
    seen: dict = {}  # (mode, digest) -> (group, position)
    where: dict = {}
    for b in batches:
        params = batch_parameters(job.config, job.plan.scenario_values(b), job.plan.batch_size(b))
        digests = scenario_digests(network, params)
        fresh: dict = {}
        rows = np.empty((params.n_scenarios, len(MODES), 2), dtype=np.int64)
        for s in range(params.n_scenarios):
            for m, name in enumerate(MODES):
                key = (m, digests[m][s])
                if key not in seen:
                    if m not in fresh:
                        fresh[m] = len(groups)
                        groups.append((name, b, []))
                    g = fresh[m]
                    seen[key] = (g, len(groups[g][2]))
                    groups[g][2].append(s)
                rows[s, m] = seen[key]
        where[b] = rows
    size = piece_size(sum(len(g[2]) for g in groups), workers, job.plan.batch_size(batches[0]) if batches else 1)
    pieces: list = []
    first = []  # per group, the index of its first piece
    for name, b, scenarios in groups:
        first.append(len(pieces))
        for start in range(0, len(scenarios), size):
            pieces.append(Piece(name, b, np.asarray(scenarios[start : start + size], dtype=np.int64)))
    starts = np.asarray(first, dtype=np.int64)
    for rows in where.values():
        g, k = rows[:, :, 0].copy(), rows[:, :, 1].copy()
        rows[:, :, 0] = starts[g] + k // size
        rows[:, :, 1] = k % size
    return Work(pieces=pieces, rows=where)


_KERNELS = threading.Lock()  # one piece at a time in a worker process, on all its threads


def _threads() -> int:
    """The Numba threads of a piece: the worker's threads (its other task threads write)."""
    import numba

    try:
        from distributed import get_worker

        wanted = get_worker().state.nthreads
    except (ImportError, ValueError):
        wanted = os.cpu_count() or 1
    return max(1, min(int(wanted), numba.config.NUMBA_NUM_THREADS))


def run_piece(recipe: Recipe, job: Job, piece: Piece) -> dict:
    """The cube variables of ``piece``'s scenarios in its mode (a Dask task)."""
    import numba

    network = obtain(recipe)
    params = batch_parameters(job.config, job.plan.scenario_values(piece.batch), job.plan.batch_size(piece.batch))
    with _KERNELS:
        numba.set_num_threads(job.threads or _threads())
        return mode_piece(network, params, piece.mode, piece.scenarios, job.config.executor.device)


def run_assemble(job: Job, batch: int, rows: np.ndarray, needs: list[int], *pieces) -> None:
    """Gather batch ``batch`` from its pieces, write it and mark it done (a Dask task);
    raises :class:`~agglo.engine.store.lease.LeaseLost` when the run lost the store's lease.
    Returns nothing, so that the driver never has to fetch a result from a worker."""
    at = {p: got for p, got in zip(needs, pieces)}
    arrays = assemble([[(at[int(p)], int(k)) for p, k in per_mode] for per_mode in rows])
    write_batch(job.store_path, job.plan, batch, arrays, job.lease_token)
