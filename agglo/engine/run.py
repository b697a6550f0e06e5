"""One run, from a checked config to a finished cube: load, plan, decide the store, execute."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import numpy as np
from omegaconf import OmegaConf

from agglo import __version__
from agglo.engine.compute.batch import NEAR_TIES
from agglo.engine.config.schema import MODES, AggloConfig, diff_keys, result_keys, scenario_table
from agglo.engine.data.towns import (
    Towns,
    describe_region_outliers,
    load_geonames,
    load_table,
    region_outliers,
    synthetic,
)
from agglo.engine.data.traveltimes import forget_read_ahead, read_ahead, with_tables
from agglo.engine.errors import UserError
from agglo.engine.executors import Progress, get_executor
from agglo.engine.executors.interrupts import check as check_interrupt
from agglo.engine.executors.task import Job
from agglo.engine.network import cache as netcache
from agglo.engine.network.build import check_size, forced_cores
from agglo.engine.planning.plan import Plan, describe_sample, make_plan
from agglo.engine.planning.scenarios import batch_parameters, reach_radii
from agglo.engine.store import cube as store
from agglo.engine.store import integrity, lease
from agglo.engine.store.outputs import writing


def load_towns(cfg: AggloConfig) -> Towns:
    d = cfg.data
    if d.source == "geonames":
        return load_geonames(d.country, None if d.admin1 is None else list(d.admin1), d.min_population)
    if d.source == "table":
        towns = load_table(d.path)
    else:
        towns = synthetic(d.n, d.seed)
    keep = towns.population >= d.min_population
    if not keep.all():
        from agglo.engine.data.towns import from_frame

        frame = towns.frame()[keep]
        if towns.region is None:
            frame = frame.drop(columns="region")
        if len(frame) == 0:
            raise UserError(
                f"data.min_population = {d.min_population}: no town of {towns.source} is that large; allowed: a smaller number"
            )
        towns = from_frame(frame.reset_index(drop=True), towns.source)
    return towns


@dataclass
class Outcome:
    path: str
    computed_batches: int
    reused: bool
    plan: Plan
    towns: Towns


def _decide_store(cfg: AggloConfig, cfg_omega, sha: str, tables: dict) -> tuple[bool, np.ndarray | None]:
    """Apply store.mode to an existing store. Returns (create new?, done mask to resume;
    None with False: a cube of this config without its progress record, to redo whole)."""
    path = cfg.store.path
    if not store.exists(path):
        return True, None
    attrs = store.read_attrs(path)
    if attrs is None:
        raise UserError(
            f"store.path = {path!r} exists and is not an agglo cube; allowed: a new path or an agglo cube (it is left untouched)"
        )
    if cfg.store.mode == "fail":
        store.require_new(path)
    if cfg.store.mode == "overwrite":
        return True, None
    found = store.state(path)
    if found == "unfinished":
        print(
            f"store.path = {path!r}: an unfinished template (a run was stopped while setting it up; "
            "no results in it); rebuilding it",
            file=sys.stderr,
        )
        return True, None
    if attrs.get("format") != store.FORMAT:
        raise UserError(
            f"store.path = {path!r} was written by an older engine (format {attrs.get('format')}, now {store.FORMAT}); "
            "allowed: store.mode=overwrite, or another store.path (it is left untouched)"
        )
    differing = diff_keys(store.stored_config(attrs), result_keys(cfg_omega))
    if attrs.get("input_sha256") != sha:
        differing.append("input table (SHA-256)")
    elif "data.path" in differing:
        differing.remove("data.path")  # the same table by another spelling of its path: content decides
    stored_tables = json.loads(attrs.get("travel_times_sha256", "{}"))
    for mode in MODES:
        key = f"{mode}.travel_times"
        if stored_tables.get(mode) != tables.get(mode):
            if key not in differing:
                differing.append(f"{key} (SHA-256)")
        elif key in differing:
            differing.remove(key)  # the same travel times by another spelling of the path
    if differing:
        raise UserError(
            f"store.path = {path!r} holds a different configuration (differs in: {', '.join(differing)}); "
            "allowed: the same configuration, store.mode=overwrite, or another store.path"
        )
    if attrs.get("device", "cpu") != cfg.executor.device:
        raise UserError(
            f"store.path = {path!r} was begun with executor.device = {attrs.get('device', 'cpu')!r}, and the devices "
            "agree only within the tolerance of agglo/kernels/cuda.py; allowed: "
            f"executor.device={attrs.get('device', 'cpu')} to finish it, store.mode=overwrite, or another store.path"
        )
    if found == "no-progress":
        print(
            f"store.path = {path!r}: the progress record (progress/batch_done) is missing; "
            "recomputing every batch into the cube (same values, same bits)",
            file=sys.stderr,
        )
        return False, None
    return False, store.batch_done(path)


def execute(cfg: AggloConfig, cfg_omega, quiet: bool = False) -> Outcome:
    """Compute what the store lacks for this config, holding the store's writer lease
    (taken before anything is read or written, given back however the run ends)."""
    store.check_location(cfg.store.path)
    from dataclasses import replace

    if cfg.executor.kind == "auto":  # the cluster, if any, started when the sweep's pace says it pays
        from agglo.engine.executors.dask import chosen_kind

        cfg = replace(cfg, executor=replace(cfg.executor, kind=chosen_kind(cfg.executor)))
    elif cfg.executor.kind == "local":  # asked for: started at once
        cfg = replace(cfg, executor=replace(cfg.executor, cluster_pays_s=0.0))
    with lease.held(cfg.store.path, "agglo run", cfg.store.lease_timeout_s) as taken:
        started = _start_executor(cfg)
        try:
            outcome = _execute(cfg, cfg_omega, quiet, taken.token, started)
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
    from agglo.engine.executors.dask import deferred, start

    if cfg.executor.kind != "local" or deferred(cfg.executor):
        return None
    if cfg.store.mode != "overwrite" and store.looks_complete(cfg.store.path):
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
    from agglo.engine.planning.scenarios import MODEL_CODES

    names = {code: name for name, code in MODEL_CODES.items()}
    for mode in MODES:
        if cfg.mode(mode).travel_times is not None:
            raise UserError(
                f"executor.device = 'cuda': {mode}.travel_times is set, and the GPU passes compute straight-line "
                "times only; allowed: executor.device=cpu with a travel-time table"
            )
        other = [names[int(c)] for c in np.unique(params.mode(mode).model) if c != MODEL_CODES["gravity"]]
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


def _execute(cfg: AggloConfig, cfg_omega, quiet: bool, lease_token: str, started=None) -> Outcome:
    path = cfg.store.path
    towns = load_towns(cfg)
    check_interrupt()
    cfg = _present_cores(cfg, towns, quiet)
    if not quiet:
        far = region_outliers(towns)
        if far:
            print(describe_region_outliers(towns, far), file=sys.stderr)
    forced = forced_cores(towns, list(cfg.cores.ids))
    table = scenario_table(cfg_omega) if cfg.sweep.table is not None else None
    plan = make_plan(cfg_omega, cfg.executor.batch_size, table)
    params_all = batch_parameters(cfg, plan.scenario_values(None), plan.n_scenarios)
    if params_all.closed.any() and towns.region is None:
        raise UserError(
            f"borders = 'closed' needs a 'region' column, and {towns.source} has none; allowed: borders=open, or a table with regions"
        )
    _check_device(cfg, params_all)
    radii = with_tables(cfg, reach_radii(params_all))
    check_size(towns, radii)  # before anything is written: one line, never a MemoryError
    floor = float(np.min(params_all.core_min_population))
    budget = cfg.executor.network_cache_gib
    if not netcache.holds(towns, forced, radii, floor, budget):
        read_ahead(towns, radii)  # a bad travel-time table too (a cached network's table was read whole)
    if cfg.executor.kind == "address":
        from agglo.engine.executors.dask import check_address

        check_address(cfg.executor)
    sha = towns.sha256()
    tables = {mode: r.sha256 for mode, r in radii.items() if hasattr(r, "sha256")}
    create, done = _decide_store(cfg, cfg_omega, sha, tables)
    writes = writing(f"store.path = {path!r}", resumable=True)
    if not create:
        plan = make_plan(cfg_omega, 1, table, chunks=json.loads(store.read_attrs(path)["plan_chunks"]))
        if done is None:
            with writes:
                store.reset_progress(path, plan.n_batches)
            done = np.zeros(plan.n_batches, dtype=bool)
        broken = integrity.template_damage(path, store.read_attrs(path))
        if broken:
            print(
                f"store.path = {path!r}: damaged: {', '.join(f'{n} ({why})' for n, why in broken.items())}; "
                "writing them again from the configuration and the towns",
                file=sys.stderr,
            )
            with writes:
                store.rebuild(path, plan, towns, list(broken))
        damaged = store.damaged_batches(path, plan, done)
        if damaged:
            shown = "; ".join(plan.describe(b) for b in damaged[:5]) + (" ..." if len(damaged) > 5 else "")
            print(
                f"store.path = {path!r}: {len(damaged)} written batch(es) have chunks missing or not matching "
                f"their checksums: {shown}; recomputing them",
                file=sys.stderr,
            )
            with writes:
                store.unmark(path, damaged)
            done[damaged] = False
    if create:
        attrs = {
            "title": "agglo result cube: small towns clustered into agglomerations by commuting and by freight",
            "config": OmegaConf.to_yaml(cfg_omega, resolve=True),
            "result_config": json.dumps(result_keys(cfg_omega), sort_keys=True),
            "engine_version": __version__,
            "input_sha256": sha,
            "input_source": towns.source,
            "travel_times_sha256": json.dumps(tables, sort_keys=True),
            "plan_chunks": json.dumps(list(plan.chunks)),
            "scenario_dims": json.dumps(list(plan.dims)),
            "model": "docs/model.md",
            "device": cfg.executor.device,
        }
        if plan.sampler is not None:
            attrs["sampler"] = json.dumps(plan.sampler)
        check_interrupt()
        with writes:
            store.create(path, plan, towns, attrs)
        done = np.zeros(plan.n_batches, dtype=bool)
    todo = [b for b in range(plan.n_batches) if not done[b]]
    if todo:
        check_interrupt()
        mapping = cfg.executor.kind == "local"  # its workers map the files

        def building():
            if not quiet:
                print(
                    f"{towns.source}: building the neighbourhood of {len(towns)} towns within "
                    f"{reach_text(radii)} (Ctrl-C stops it)",
                    file=sys.stderr,
                )

        opened = netcache.opened(towns, forced, radii, floor, budget, files_now=mapping, building=building)
        with opened as (network, files):
            check_interrupt()
            if not quiet:
                from agglo.engine.executors.dask import describe

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
            total = sum(plan.batch_size(b) for b in todo)
            progress = Progress(total, stream=sys.stderr, quiet=quiet)
            job = Job(config=cfg, plan=plan, store_path=path, lease_token=lease_token)
            near_before = list(NEAR_TIES)
            with writes:
                if cfg.executor.kind == "synchronous":
                    get_executor("synchronous")(network, job, todo, progress)
                else:
                    from agglo.engine.executors.dask import run_batches
                    from agglo.engine.network.recipe import recipe_of

                    recipe = recipe_of(cfg, towns, forced, radii, floor)
                    run_batches(network, job, todo, progress, cfg.executor, recipe, started, files)
            if cfg.executor.device == "cuda" and not quiet and NEAR_TIES[1] > near_before[1]:
                near, towns_seen = NEAR_TIES[0] - near_before[0], NEAR_TIES[1] - near_before[1]
                print(
                    f"executor.device = 'cuda': {near} of {towns_seen} town assignments computed here lie within "
                    "1e-5 of a tie between two cores or of the threshold, where the CPU may choose otherwise "
                    "(batches on Dask workers are not counted)",
                    file=sys.stderr,
                )
    elif not quiet:
        print(f"{path}: already complete for this configuration; nothing to compute", file=sys.stderr)
    return Outcome(path=path, computed_batches=len(todo), reused=not create, plan=plan, towns=towns)
