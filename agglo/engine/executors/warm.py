"""Workers ready before their first task: the engine imported, its compiled kernels loaded
and the run's network obtained, in a thread of each worker process.

- The engine's own local cluster names this module as its workers' ``preload``: each
  process imports the engine and loads the kernels before it joins, while the driver
  reads the towns, builds the network and computes its first batches.
- A run on an existing scheduler registers :class:`Warm` as a worker plugin (its workers,
  replacements and late joiners included): each worker obtains the run's network
  (:func:`agglo.engine.network.recipe.obtain`) before its first task.

A warm-up that fails says nothing: the first task does the same work and reports.
"""

from __future__ import annotations

import threading

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

_WARM = threading.Lock()


def load_kernels(radii: dict | None = None, core_floor: float | None = None, job=None) -> None:
    """Call the kernels once on a tiny network of the run's types (Numba loads them from
    its cache at the first call of each signature)."""
    from agglo.engine.compute.batch import mode_piece
    from agglo.engine.config.names import MODES
    from agglo.engine.config.schema import AggloConfig
    from agglo.engine.data.towns import synthetic
    from agglo.engine.network.build import prepare
    from agglo.engine.planning.scenarios import batch_parameters, reach_radii

    cfg = job.config if job is not None else AggloConfig()
    swept = job.plan.scenario_values(0) if job is not None else {}
    params = batch_parameters(cfg, swept, job.plan.batch_size(0) if job is not None else 1).take(slice(0, 1))
    towns = synthetic(64, 0)
    network = prepare(towns, np.zeros(64, dtype=bool), radii or reach_radii(params), core_floor)
    for name in MODES:
        mode_piece(network, params, name, np.array([0]))


def _warm(recipe=None, job=None) -> None:
    try:
        with _WARM:
            load_kernels(recipe.radii if recipe else None, recipe.core_floor if recipe else None, job)
        if recipe is not None:
            from agglo.engine.network.recipe import obtain

            obtain(recipe)
    except Exception:  # noqa: BLE001 - the first task does the same and reports
        pass


def dask_setup(worker=None) -> None:
    """Dask's preload hook: warm this worker process before it joins the cluster, so that
    the local cluster is up only once its workers are ready to compute (the driver
    computes batches meanwhile)."""
    _warm()


class Warm(WorkerPlugin):
    """A Dask worker plugin: each worker, present or joining later, obtains the run's
    network and loads the kernels in a thread as soon as it has the plugin."""

    name = "agglo-warm"

    def __init__(self, recipe, job):
        self.recipe = recipe
        self.job = job

    def setup(self, worker=None) -> None:
        threading.Thread(target=_warm, args=(self.recipe, self.job), daemon=True, name="agglo-warm").start()
