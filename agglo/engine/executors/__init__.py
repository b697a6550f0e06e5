"""Where batches run. Each executor takes the same task (compute a batch, write its
region, mark it done) and a list of batch numbers; the synchronous one is the reference."""

from agglo.engine.executors.progress import Progress


def get_executor(kind: str):
    if kind == "synchronous":
        from agglo.engine.executors.synchronous import run_batches
    else:
        from agglo.engine.executors.dask import run_batches
    return run_batches


__all__ = ["Progress", "get_executor"]
