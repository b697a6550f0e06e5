"""In-process execution, one batch after another: the reference every executor must equal."""

from agglo.engine.executors.interrupts import check
from agglo.engine.executors.task import run_batch
from agglo.engine.store.lease import LeaseLost


def run_one(network, job, batch, progress) -> None:
    """Batch ``batch`` in this process, written, marked and counted; stops first on Ctrl-C
    (the batches before are written and marked) and after on a lost writer lease."""
    check()
    _, size, lost = run_batch(network, job, batch)
    if lost:
        raise LeaseLost(lost)
    progress.update(size)


def run_batches(network, job, batches, progress):
    for b in batches:
        run_one(network, job, b, progress)
