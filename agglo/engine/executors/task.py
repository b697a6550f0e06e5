"""The one task every executor runs: compute a batch with the kernels, write it, mark it."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from agglo.engine.compute.batch import compute_batch, memo_of
from agglo.engine.config.schema import AggloConfig
from agglo.engine.executors.interrupts import native
from agglo.engine.network.build import Network
from agglo.engine.network.files import NetworkFiles, mapped
from agglo.engine.planning.plan import Plan
from agglo.engine.planning.scenarios import batch_parameters
from agglo.engine.store.cube import write_batch
from agglo.engine.store.lease import LeaseLost


@dataclass(frozen=True)
class Job:
    """What every batch of a run shares (sent to each worker once)."""

    config: AggloConfig
    plan: Plan
    store_path: str
    threads: int | None = None
    lease_token: str | None = None  # the run's writer lease: every batch checks it still holds it


def run_batch(network: Network | NetworkFiles, job: Job, batch: int) -> tuple[int, int, str | None]:
    """Compute batch ``batch`` and write it to the store; return (batch, scenarios, None),
    or (batch, 0, why) when the run lost the store's writer lease: the executor stops the
    run with ``why`` (returned, not raised, so that a Dask worker logs no failed task).
    ``network`` may be the handle of a spilled one (:func:`agglo.engine.network.files.spill`)."""
    network = mapped(network)
    if job.threads is not None:
        numba.set_num_threads(min(job.threads, numba.config.NUMBA_NUM_THREADS))
    size = job.plan.batch_size(batch)
    params = batch_parameters(job.config, job.plan.scenario_values(batch), size)
    device = job.config.executor.device
    arrays = native(compute_batch, network, params, memo_of(network), True, device)  # a signal heard while it runs
    try:
        write_batch(job.store_path, job.plan, batch, arrays, job.lease_token)
    except LeaseLost as lost:
        return batch, 0, str(lost)
    return batch, size, None
