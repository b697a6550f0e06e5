"""Where batches run. The synchronous executor runs one task (compute a batch, write its
region, mark it done) batch after batch in the driver: the reference. The Dask executor
(:mod:`~agglo.engine.executors.dask`) runs the same computation as a graph of pieces and
batches (:mod:`~agglo.engine.executors.graph`) on workers that obtain the network
themselves (:mod:`agglo.engine.network.recipe`); the cube is the same, bit for bit."""

from agglo.engine.executors.progress import Progress


def get_executor(kind: str):
    if kind == "synchronous":
        from agglo.engine.executors.synchronous import run_batches
    else:
        from agglo.engine.executors.dask import run_batches
    return run_batches


__all__ = ["Progress", "get_executor"]
