"""One run, from a checked config to a finished cube: load, plan, decide the store, execute."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np

from agglo.engine.compute.batch import NEAR_TIES
from agglo.engine.config.names import MODES
from agglo.engine.config.schema import AggloConfig
from agglo.engine.config.text import result_keys, to_yaml
from agglo.engine.data.load import check_mass, load_towns
from agglo.engine.data.towns import Towns, describe_region_outliers, region_outliers
from agglo.engine.data.traveltimes import forget_read_ahead, read_ahead, with_tables
from agglo.engine.errors import UserError
from agglo.engine.executors import Progress, get_executor
from agglo.engine.executors.interrupts import check as check_interrupt
from agglo.engine.executors.task import Job
from agglo.engine.network import cache as netcache
from agglo.engine.network.build import check_size, forced_cores
from agglo.engine.planning.plan import Plan, describe_sample, make_plan
from agglo.engine.planning.scenario_file import table_values
from agglo.engine.planning.scenarios import batch_parameters, models_used, reach_radii
from agglo.engine.store import cube as store
from agglo.engine.store import lease, reading
from agglo.engine.store import state as store_state
from agglo.engine.store.outputs import writing


@dataclass
class Outcome:
    path: str
    computed_batches: int
    reused: bool
    plan: Plan
    towns: Towns


def execute(cfg: AggloConfig, quiet: bool = False) -> Outcome:
    """Compute what the store lacks for this config, holding the store's writer lease
    (taken before anything is read or written, given back however the run ends)."""
    recorded = {"yaml": to_yaml(cfg), "results": result_keys(cfg)}  # the config as given
    store.check_location(cfg.store.path)
    from dataclasses import replace

    if cfg.executor.kind == "auto":  # the cluster, if any, started when the sweep's pace says it pays
        from agglo.engine.executors.cluster import chosen_kind

        cfg = replace(cfg, executor=replace(cfg.executor, kind=chosen_kind(cfg.executor)))
    elif cfg.executor.kind == "local":  # asked for: started at once
        cfg = replace(cfg, executor=replace(cfg.executor, cluster_pays_s=0.0))
    with lease.held(cfg.store.path, "agglo run", cfg.store.lease_timeout_s) as taken:
        started = _start_executor(cfg)
        try:
            outcome = _execute(cfg, recorded, quiet, taken.token, started)
        except BaseException:
            if started is not None:
                started.close()
            raise
        finally:
            forget_read_ahead()  # rows of a table read ahead for a build that did not happen
        if started is not None:
            started.close(wait=False)
        return outcome


def _start_executor(cfg: AggloConfig):
    """The local Dask cluster, started now in a thread so that it comes up while the towns
    are read and the network built; None for other executors or a finished store."""
    from agglo.engine.executors.cluster import deferred, start

    if cfg.executor.kind != "local" or deferred(cfg.executor):
        return None
    if cfg.store.mode != "overwrite" and reading.looks_complete(cfg.store.path):
        return None

    return start(cfg.executor)


def reach_text(radii: dict) -> str:
    """The reach a build covers: km of the distance rows, and each travel-time table."""
    km = [float(r) for r in radii.values() if isinstance(r, float)]
    tables = [f"{m}'s travel times" for m, r in radii.items() if not isinstance(r, float)]
    return " and ".join(([f"{max(km):.0f} km"] if km else []) + tables)


def _check_device(cfg: AggloConfig, params) -> None:
    """``executor.device=cuda`` needs a GPU (or Numba's simulator) and the gravity model."""
    if cfg.executor.device != "cuda":
        return
    used = models_used(params)
    for mode in MODES:
        if cfg.mode(mode).travel_times is not None:
            raise UserError(
                f"executor.device = 'cuda': {mode}.travel_times is set, and the GPU passes compute straight-line "
                "times only; allowed: executor.device=cpu with a travel-time table"
            )
        other = [name for name in used[mode] if name != "gravity"]
        if other:
            raise UserError(
                f"executor.device = 'cuda': {mode}.model = {other[0]} runs on the CPU only; "
                "allowed: the gravity model on cuda, or executor.device=cpu"
            )
    from numba import cuda

    if not cuda.is_available():
        raise UserError(
            "executor.device = 'cuda': no CUDA GPU here (numba.cuda finds none); "
            "allowed: executor.device=cpu, or a machine with an NVIDIA GPU and pip install -e '.[cuda]'"
        )


def _present_cores(cfg: AggloConfig, towns: Towns, quiet: bool) -> AggloConfig:
    """With ``cores.missing=drop`` (an experiment's forced cores, not the user's), the
    forced cores that are not among the towns are left out, with a note."""
    if cfg.cores.missing != "drop" or not cfg.cores.ids:
        return cfg
    from dataclasses import replace

    known = {str(t) for t in towns.town_id}
    present = [i for i in cfg.cores.ids if str(i) in known]
    if len(present) < len(cfg.cores.ids) and not quiet:
        print(
            f"cores.ids: {len(cfg.cores.ids) - len(present)} of the experiment's forced cores are not among the towns "
            f"of {towns.source}; left out (set cores.ids to choose your own)",
            file=sys.stderr,
        )
    return replace(cfg, cores=replace(cfg.cores, ids=present))


@dataclass
class _Inputs:
    """What a run has read and checked before it touches the store."""

    cfg: AggloConfig  # with the forced cores that are present
    towns: Towns
    forced: np.ndarray
    table: dict | None  # sweep.table's values
    plan: Plan
    radii: dict  # mode -> km of its reach, or its travel-time table
    floor: float  # the smallest cores.min_population of the sweep
    sha: str  # the towns' SHA-256
    tables: dict  # mode -> its travel-time table's SHA-256


def _read_inputs(cfg: AggloConfig, quiet: bool) -> _Inputs:
    """Towns, plan and reach, every check that can refuse the run (before anything is written)."""
    notes: list[str] = []  # said once every input check has passed (an error stays one line)
    towns = load_towns(cfg, report=notes.append)
    check_interrupt()
    cfg = _present_cores(cfg, towns, quiet)
    far = [] if quiet else region_outliers(towns)
    if far:
        notes.append(describe_region_outliers(towns, far))
    forced = forced_cores(towns, list(cfg.cores.ids))
    table = table_values(cfg) if cfg.sweep.table is not None else None
    plan = make_plan(cfg, cfg.executor.batch_size, table)
    params_all = batch_parameters(cfg, plan.scenario_values(None), plan.n_scenarios)
    if params_all.closed.any() and towns.region is None:
        raise UserError(
            f"borders = 'closed' needs a 'region' column, and {towns.source} has none; allowed: borders=open, or a table with regions"
        )
    _check_device(cfg, params_all)
    check_mass(towns, models_used(params_all))
    radii = with_tables(cfg, reach_radii(params_all))
    check_size(towns, radii)  # before anything is written: one line, never a MemoryError
    floor = float(np.min(params_all.core_min_population))
    if not netcache.holds(towns, forced, radii, floor, cfg.executor.network_cache_gib):
        read_ahead(towns, radii)  # a bad travel-time table too (a cached network's table was read whole)
    if cfg.executor.kind == "address":
        from agglo.engine.executors.cluster import check_address

        check_address(cfg.executor)
    tables = {mode: r.sha256 for mode, r in radii.items() if hasattr(r, "sha256")}
    for line in notes if not quiet else ():
        print(line, file=sys.stderr)
    return _Inputs(cfg, towns, forced, table, plan, radii, floor, towns.sha256(), tables)


def _execute(cfg: AggloConfig, recorded: dict, quiet: bool, lease_token: str, started=None) -> Outcome:
    path = cfg.store.path
    got = _read_inputs(cfg, quiet)
    cfg, plan = got.cfg, got.plan
    create, done = store_state.decide(cfg, recorded["results"], got.sha, got.tables)
    writes = writing(f"store.path = {path!r}", resumable=True)
    if not create:
        plan = make_plan(cfg, 1, got.table, chunks=json.loads(store.read_attrs(path)["plan_chunks"]))
        done = store_state.repair(path, plan, got.towns, done, writes)
    else:
        check_interrupt()
        attrs = store_state.cube_attrs(recorded, plan, got.towns, got.sha, got.tables, cfg.executor.device)
        with writes:
            store.create(path, plan, got.towns, attrs)
        done = np.zeros(plan.n_batches, dtype=bool)
    todo = [b for b in range(plan.n_batches) if not done[b]]
    if todo:
        check_interrupt()
        _compute(got, plan, todo, writes, lease_token, started, quiet)
    elif not quiet:
        print(f"{path}: already complete for this configuration; nothing to compute", file=sys.stderr)
    return Outcome(path=path, computed_batches=len(todo), reused=not create, plan=plan, towns=got.towns)


def _compute(got: _Inputs, plan: Plan, todo: list, writes, lease_token: str, started, quiet: bool) -> None:
    """The batches ``todo`` computed on the network (from the cache or built) and written."""
    cfg, towns, radii = got.cfg, got.towns, got.radii

    def building():
        if not quiet:
            print(
                f"{towns.source}: building the neighbourhood of {len(towns)} towns within "
                f"{reach_text(radii)} (Ctrl-C stops it)",
                file=sys.stderr,
            )

    mapping = cfg.executor.kind == "local"  # its workers map the files
    budget = cfg.executor.network_cache_gib
    opened = netcache.opened(towns, got.forced, radii, got.floor, budget, files_now=mapping, building=building)
    with opened as (network, files):
        check_interrupt()
        if not quiet:
            _describe(cfg, started, plan, towns, network, files, todo)
        progress = Progress(sum(plan.batch_size(b) for b in todo), stream=sys.stderr, quiet=quiet)
        job = Job(config=cfg, plan=plan, store_path=cfg.store.path, lease_token=lease_token)
        near_before = list(NEAR_TIES)
        with writes:
            if cfg.executor.kind == "synchronous":
                get_executor("synchronous")(network, job, todo, progress)
            else:
                from agglo.engine.executors.dask import run_batches
                from agglo.engine.network.recipe import recipe_of

                recipe = recipe_of(cfg, towns, got.forced, radii, got.floor)
                run_batches(network, job, todo, progress, cfg.executor, recipe, started, files)
        if cfg.executor.device == "cuda" and not quiet and NEAR_TIES[1] > near_before[1]:
            near, towns_seen = NEAR_TIES[0] - near_before[0], NEAR_TIES[1] - near_before[1]
            print(
                f"executor.device = 'cuda': {near} of {towns_seen} town assignments computed here lie within "
                "1e-5 of a tie between two cores or of the threshold, where the CPU may choose otherwise "
                "(batches on Dask workers are not counted)",
                file=sys.stderr,
            )


def _describe(cfg: AggloConfig, started, plan: Plan, towns: Towns, network, files, todo: list) -> None:
    from agglo.engine.executors.cluster import describe

    print(describe(cfg.executor, started), file=sys.stderr)
    if plan.sampler is not None:
        print(describe_sample(plan.sampler), file=sys.stderr)
    print(
        f"{towns.source}: {len(towns)} towns, {network.reach_text()}"
        f"{' (cached)' if files is not None else ''}; "
        f"{plan.n_scenarios} scenarios in {plan.n_batches} batches"
        + (f" ({len(todo)} left to compute)" if len(todo) < plan.n_batches else ""),
        file=sys.stderr,
    )
