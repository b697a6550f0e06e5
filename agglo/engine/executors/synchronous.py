"""In-process execution, one batch after another: the reference every executor must equal."""

from agglo.engine.executors.task import run_batch


def run_batches(network, job, batches, progress, executor_config=None):
    for b in batches:
        _, size = run_batch(network, job, b)
        progress.update(size)
