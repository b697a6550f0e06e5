"""In-process execution, one batch after another: the reference every executor must equal."""

from agglo.engine.executors.task import run_batch
from agglo.engine.interrupts import check
from agglo.engine.lease import LeaseLost


def run_batches(network, job, batches, progress):
    for b in batches:
        check()  # Ctrl-C: stop here, the batches before are written and marked
        _, size, lost = run_batch(network, job, b)
        if lost:
            raise LeaseLost(lost)
        progress.update(size)
