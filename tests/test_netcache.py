"""The on-disk network cache (engine/network/cache.py): used only when whole and from the same
inputs and code, rebuilt when damaged, bounded by its budget, never changing a result."""

import fcntl
import os
from pathlib import Path

import numpy as np
import pytest

from agglo.engine.data.towns import synthetic
from agglo.engine.network import cache as netcache
from agglo.engine.network.build import prepare
from tests.conftest import SMALL, cube_arrays

SWEEP = ["commute.cap_min=40,80", "freight.cap_min=120,240"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AGGLO_NETWORK_CACHE_DIR", raising=False)
    return tmp_path / "cache" / "networks"


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.iterdir() if not p.name.startswith(".")) if cache.exists() else []


def test_a_second_run_maps_the_cached_network_and_writes_the_samecube_arrays(run_cli, cache, tmp_path):
    args = [*SMALL, *SWEEP]
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 'a.zarr'}", "executor.network_cache_gib=0")
    assert code == 0 and "(cached)" not in err and not cache.exists()
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 'b.zarr'}")
    assert code == 0 and "(cached)" not in err and len(_entries(cache)) == 1
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 'c.zarr'}")
    assert code == 0 and "(cached)" in err and len(_entries(cache)) == 1
    cubes = [cube_arrays(tmp_path / f"{name}.zarr") for name in "abc"]
    assert _same(cubes[0], cubes[1]) and _same(cubes[0], cubes[2])
    # Another radius is another entry.
    code, _, err = run_cli("run", *SMALL, "freight.cap_min=300", f"store.path={tmp_path / 'd.zarr'}")
    assert code == 0 and "(cached)" not in err and len(_entries(cache)) == 2


def test_the_cached_network_equals_the_built_one_array_for_array(cache):
    towns = synthetic(300, 3)
    radii = {"commute": 60.0, "freight": 250.0}
    built = prepare(towns, towns.core, radii, 5000.0)
    for _ in range(2):  # written, then read back
        with netcache.opened(towns, towns.core, radii, 5000.0, 1.0) as (network, files):
            assert files is not None
            got = network
    for mode in built.rows:
        for name, value in built.rows[mode]._asdict().items():
            assert np.array_equal(np.asarray(getattr(got.rows[mode], name)), np.asarray(value)), (mode, name)
    for name, value in built.places._asdict().items():
        assert np.array_equal(getattr(got.places, name), value), name
    assert (got.rows["commute"] is got.rows["freight"]) == (built.rows["commute"] is built.rows["freight"])
    # The same Numba types (a read-only array is another type): a mapped network compiles nothing new.
    import numba

    assert numba.typeof(got.places) == numba.typeof(built.places)
    assert all(numba.typeof(got.rows[m]) == numba.typeof(built.rows[m]) for m in built.rows)


@pytest.mark.parametrize("damage", ["flipped", "truncated", "removed", "manifest", "partial"])
def test_a_damaged_entry_is_detected_removed_and_rebuilt_never_used(run_cli, cache, tmp_path, damage):
    args = [*SMALL, *SWEEP]
    assert run_cli("run", *args, f"store.path={tmp_path / 'a.zarr'}")[0] == 0
    (entry,) = _entries(cache)
    files = sorted(entry.glob("rows0.neighbour*.npy")) + sorted(entry.glob("rows*.log_dist.npy"))
    target = files[0]
    if damage == "flipped":  # one byte of the data, not of the header
        data = bytearray(target.read_bytes())
        data[-5] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-64])
    elif damage == "removed":
        target.unlink()
    elif damage == "manifest":
        (entry / "manifest.json").write_text("{not json")
    else:  # no manifest (entries appear whole by rename, so this one was damaged after)
        (entry / "manifest.json").unlink()
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 'b.zarr'}")
    assert code == 0 and "(cached)" not in err and "damaged" in err and str(entry) in err
    assert _same(cube_arrays(tmp_path / "a.zarr"), cube_arrays(tmp_path / "b.zarr"))
    code, _, err = run_cli("run", *args, f"store.path={tmp_path / 'c.zarr'}")  # rebuilt whole
    assert code == 0 and "(cached)" in err and "damaged" not in err


def test_the_least_recently_used_entries_go_beyond_the_budget_but_not_one_in_use(cache):
    towns = synthetic(300, 3)
    entries = []
    for k, cap in enumerate((100.0, 150.0, 200.0)):
        with netcache.opened(towns, towns.core, {"commute": 60.0, "freight": cap}, 5000.0, 1.0) as (_, files):
            entries.append(Path(files.folder))
        os.utime(entries[-1] / "manifest.json", (1e9 + k, 1e9 + k))  # used in this order
    sizes = [sum(p.stat().st_size for p in e.iterdir()) for e in entries]
    # Entry 0 is in use by a run (it holds the shared lock): only entry 1 can go.
    with open(entries[0] / "lock", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        removed = netcache.evict(cache, sizes[2] + 1, keep=entries[2])
    assert removed == [entries[1]] and not entries[1].exists() and entries[0].exists()
    removed = netcache.evict(cache, sizes[2] + 1)
    assert removed == [entries[0]] and _entries(cache) == [entries[2]]


def test_a_network_larger_than_the_budget_is_not_cached(cache):
    towns = synthetic(300, 3)
    with netcache.opened(towns, towns.core, {"commute": 60.0, "freight": 200.0}, 5000.0, 1e-6) as (network, files):
        assert files is None and network.n_pairs > 0
    assert _entries(cache) == []


def test_a_negative_cache_budget_is_a_one_line_error(run_cli, tmp_path):
    code, out, err = run_cli("run", *SMALL, "executor.network_cache_gib=-1", f"store.path={tmp_path / 'x.zarr'}")
    assert code == 2 and "executor.network_cache_gib" in err and "-1" in err and "Traceback" not in err
    assert not (tmp_path / "x.zarr").exists()


def test_the_local_cluster_maps_the_cached_entry_instead_of_spilling(run_cli, cache, tmp_path, monkeypatch):
    import agglo.engine.executors.dask as dask_executor

    spilled = []
    monkeypatch.setattr(dask_executor, "_copy_for_workers", lambda network, folder: spilled.append(folder))
    sweep = [*SMALL, *SWEEP, "executor.batch_size=1"]
    local = ["executor.kind=local", "executor.n_workers=2", "executor.compute_while_starting=false"]
    code, _, err = run_cli("run", *sweep, *local, f"store.path={tmp_path / 'local.zarr'}")
    assert code == 0, err
    assert spilled == [] and len(_entries(cache)) == 1  # written before the workers start, then mapped
    assert run_cli("run", *sweep, "executor.network_cache_gib=0", f"store.path={tmp_path / 'sync.zarr'}")[0] == 0
    assert _same(cube_arrays(tmp_path / "local.zarr"), cube_arrays(tmp_path / "sync.zarr"))


def test_the_network_cache_can_live_elsewhere(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("AGGLO_NETWORK_CACHE_DIR", str(tmp_path / "scratch"))
    towns = synthetic(200, 2)
    with netcache.opened(towns, towns.core, {"commute": 60.0, "freight": 120.0}, 5000.0, 1.0) as (_, files):
        assert Path(files.folder).parent == tmp_path / "scratch"
    assert _entries(cache) == [] and len(_entries(tmp_path / "scratch")) == 1
