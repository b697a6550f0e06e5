"""What a Dask worker is sent instead of the network: the recipe for it.

A network is a pure function of the towns, the forced cores, the reach radii and the core
floor (:func:`agglo.engine.network.build.prepare`), and the network cache names an entry by a
SHA-256 of exactly these and the code that builds it (:func:`agglo.engine.network.cache.entry_key`).
So a task carries a :class:`Recipe` (a few hundred bytes: where the towns come from, the
settings that shape the neighbourhood, that key), and each worker process obtains the
network once (:func:`obtain`), in this order:

1. its own machine's network cache (the entry named by the key, checked in full);
2. a copy the driver wrote where the worker can read it (``Recipe.copy``: the engine's own
   local cluster maps the driver's cache entry, or a copy in a temporary folder when the
   cache is off, without checking every byte again, since the driver has just checked or
   written it and holds it; ``executor.network_beside_store`` writes one next to the store
   for workers that share the driver's file system, checked in full);
3. built from the towns, which the worker loads itself as the driver did, and written to
   its own machine's cache (one builder per machine; the others wait and map it). The
   build is deterministic: same towns and radii, same bits. A worker whose towns or code
   give another key refuses, rather than computing on another network.

A worker that cannot obtain the network raises :class:`NetworkUnavailable`, whose message
names the worker and the reason; the driver stops the run with that one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from agglo.engine.config.schema import DataConfig
from agglo.engine.errors import UserError
from agglo.engine.network import cache as netcache
from agglo.engine.network.build import Network, prepare
from agglo.engine.network.files import mapped


class NetworkUnavailable(Exception):
    """A worker could not obtain the run's network (the message says which worker and why)."""


@dataclass(frozen=True)
class Recipe:
    data: DataConfig  # where the towns come from (a table's path made absolute by the driver)
    core_ids: tuple  # cores.ids
    radii: dict  # mode -> reach radius (km)
    core_floor: float | None
    key: str  # netcache.entry_key of the driver's network (hex)
    cache_gib: float  # the worker's own network cache budget (executor.network_cache_gib)
    copy: str | None = None  # a folder holding a copy of the entry, or None
    copy_checked: bool = False  # the driver wrote or checked ``copy`` on this machine in this run


def recipe_of(cfg, towns, forced, radii: dict, core_floor, copy: str | None = None) -> Recipe:
    from dataclasses import replace

    data = cfg.data
    if data.source == "table" and data.path:
        data = replace(data, path=os.path.abspath(data.path))
    return Recipe(
        data=data,
        core_ids=tuple(cfg.cores.ids),
        radii=dict(radii),
        core_floor=core_floor,
        key=netcache.entry_key(towns, forced, radii, core_floor),
        cache_gib=float(cfg.executor.network_cache_gib),
        copy=copy,
    )


_HELD: dict = {}  # recipe key -> (Network, the shared lock on its cache entry or None): one per process
_LOCK = threading.Lock()


def worker_name() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return f"process {os.getpid()}"


def obtain(recipe: Recipe) -> Network:
    """The network of ``recipe`` in this process: cached, copied or built (see the module's text)."""
    got = _HELD.get(recipe.key)
    if got is not None:
        return got[0]
    with _LOCK:
        got = _HELD.get(recipe.key)
        if got is None:
            got = _obtain(recipe)
            for _, held in _HELD.values():  # one run's network at a time per worker
                if held is not None:
                    held.close()
            _HELD.clear()
            _HELD[recipe.key] = got
        return got[0]


def _from_cache(recipe: Recipe):
    if recipe.cache_gib <= 0:
        return None
    held, files = netcache.use(netcache.cache_folder() / recipe.key[:32])
    return None if files is None else (mapped(files), held)


def _obtain(recipe: Recipe):
    if recipe.copy_checked and Path(recipe.copy or "").is_dir():
        # The engine's own workers: the driver checked (or wrote) these files moments ago
        # on this machine and holds them under a lock; their sizes and dtypes are checked again.
        try:
            return mapped(netcache.read_entry(Path(recipe.copy), checksums=False)), None
        except netcache.UNREADABLE:
            pass
    found = _from_cache(recipe)
    if found is not None:
        return found
    if recipe.copy is not None and Path(recipe.copy).is_dir():
        try:
            return mapped(netcache.read_entry(Path(recipe.copy))), None
        except netcache.UNREADABLE:
            pass  # damaged or half there: build it instead
    with _build_lock(recipe):
        found = _from_cache(recipe)  # another worker of this machine built it meanwhile
        if found is not None:
            return found
        network = _build(recipe)
        if recipe.cache_gib > 0 and network.nbytes <= recipe.cache_gib * 2**30:
            root = netcache.cache_folder()
            held, files = netcache.store(network, root, root / recipe.key[:32], int(recipe.cache_gib * 2**30))
            if files is not None:
                return mapped(files), held
        return network, None


@contextlib.contextmanager
def _build_lock(recipe: Recipe):
    """An exclusive flock per entry in this machine's cache folder, so that one worker of a
    machine builds while the others wait; none where the folder cannot be written."""
    handle = None
    if recipe.cache_gib > 0:
        root = netcache.cache_folder()
        try:
            root.mkdir(parents=True, exist_ok=True)
            handle = open(root / f".build-{recipe.key[:32]}.lock", "ab")
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            handle = None
    try:
        yield
    finally:
        if handle is not None:
            handle.close()


def _build(recipe: Recipe) -> Network:
    from agglo.engine.config.schema import AggloConfig, CoresConfig
    from agglo.engine.data.load import load_towns
    from agglo.engine.network.build import forced_cores

    where = worker_name()
    try:
        cfg = AggloConfig(data=recipe.data, cores=CoresConfig(ids=list(recipe.core_ids)))
        towns = load_towns(cfg)
        forced = forced_cores(towns, list(recipe.core_ids))
    except UserError as err:
        raise NetworkUnavailable(f"{where} cannot obtain the network: {err}") from None
    except OSError as err:
        raise NetworkUnavailable(f"{where} cannot obtain the network: cannot read the towns ({err})") from None
    key = netcache.entry_key(towns, forced, recipe.radii, recipe.core_floor)
    if key != recipe.key:
        raise NetworkUnavailable(
            f"{where} cannot obtain the network: its towns ({towns.source}, {len(towns)} towns) or its agglo "
            "code differ from the driver's; allowed: the same table and the same agglo version on every worker"
        )
    return prepare(towns, forced, recipe.radii, recipe.core_floor)
