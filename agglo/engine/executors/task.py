"""The one task every executor runs: compute a batch with the kernels, write it, mark it."""

from __future__ import annotations

from dataclasses import dataclass

import numba

from agglo.engine.compute import compute_batch
from agglo.engine.config import AggloConfig
from agglo.engine.network import Network
from agglo.engine.plan import Plan
from agglo.engine.scenarios import batch_parameters
from agglo.engine.store import write_batch


@dataclass(frozen=True)
class Job:
    """What every batch of a run shares (sent to each worker once)."""

    config: AggloConfig
    plan: Plan
    store_path: str
    threads: int | None = None


def run_batch(network: Network, job: Job, batch: int) -> tuple[int, int]:
    """Compute batch ``batch`` and write it to the store; return (batch, scenarios)."""
    if job.threads is not None:
        numba.set_num_threads(min(job.threads, numba.config.NUMBA_NUM_THREADS))
    size = job.plan.batch_size(batch)
    params = batch_parameters(job.config, job.plan.scenario_values(batch), size)
    arrays = compute_batch(network, params)
    write_batch(job.store_path, job.plan, batch, arrays)
    return batch, size
