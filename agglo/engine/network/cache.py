"""The network of a run, kept on disk between runs: the same towns and reach radii build it once.

A national sweep spends seconds building its neighbourhood and tables
(:func:`agglo.engine.network.build.prepare`; docs/performance.md), every run again. :func:`opened` keeps the built network under the user's
cache folder (``networks/`` in ``$AGGLO_CACHE_DIR``, else ``$XDG_CACHE_HOME/agglo``, else
``~/.cache/agglo``; or ``$AGGLO_NETWORK_CACHE_DIR``), in the ``.npy`` layout of
:func:`agglo.engine.network.files.spill`, so that a later run with the same inputs maps it
instead, and the engine's local Dask workers map the same files (no spill per run).

Never a second source of truth:

- an entry is named by a SHA-256 of everything the network is built from: the towns'
  coordinates, populations and regions, the forced cores, the radii, the core floor, and
  the sources of the code that builds it (``agglo/kernels/*.py``, ``network.py``, this
  file); an edited kernel or another table is another entry;
- an entry is written aside and renamed into place whole, with a manifest (written last)
  that records each file's size, dtype, shape and :func:`agglo.kernels.checksum.array_checksum`;
- every use re-reads every file and checks all of it; an entry that is incomplete, does
  not check out or cannot be read is removed and rebuilt, with one line on stderr.

The folder holds at most ``executor.network_cache_gib`` (default 4; 0 turns the cache
off): after writing an entry the least recently used others go (an entry in use by a run,
which holds a shared lock on it, is never removed). A network larger than the budget, or
a folder that cannot be written, is built in memory as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

from agglo.engine.executors.interrupts import native
from agglo.engine.network.build import Network, prepare
from agglo.engine.network.files import NetworkFiles, mapped, spill, spill_layout
from agglo.kernels.checksum import array_checksum

FORMAT = 2  # 2: per-pair table minutes, incoming rows
MANIFEST = "manifest.json"
LOCK = "lock"
UNREADABLE = (OSError, ValueError, KeyError, TypeError)  # a file or manifest that is not what it must be


def cache_folder() -> Path:
    """``$AGGLO_NETWORK_CACHE_DIR`` (a scratch disk, say), else ``networks/`` in the cache folder."""
    if os.environ.get("AGGLO_NETWORK_CACHE_DIR"):
        return Path(os.environ["AGGLO_NETWORK_CACHE_DIR"])
    from agglo.engine.data.geonames import cache_dir

    return cache_dir() / "networks"


def _code_digest() -> bytes:
    package = Path(__file__).parents[2]  # agglo/
    sources = sorted((package / "kernels").rglob("*.py"))
    sources += [package / "engine/network/build.py", package / "engine/data/traveltimes.py", Path(__file__)]
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in sources)).digest()


def entry_key(towns, forced: np.ndarray, radii: dict, core_floor: float | None) -> str:
    """The SHA-256 (hex) of everything :func:`~agglo.engine.network.build.prepare` reads."""
    digest = hashlib.sha256(f"agglo-network-{FORMAT}".encode())
    digest.update(_code_digest())
    for name, array in (
        ("lat", towns.lat),
        ("lon", towns.lon),
        ("population", towns.population),
        ("region", towns.region_code),
        ("forced", forced),
        *((("mass", towns.mass),) if towns.mass is not None else ()),
    ):
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    digest.update(
        json.dumps({"radii": {k: _reach_key(v) for k, v in sorted(radii.items())}, "core_floor": core_floor}).encode()
    )
    return digest.hexdigest()


def _reach_key(reach):
    """A mode's reach as the key names it: km, or its travel-time table's bytes and limit."""
    return reach.key() if hasattr(reach, "key") else float(reach)


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.npy"))


def write_entry(network: Network, folder: Path, final: Path) -> NetworkFiles | None:
    """``network`` into ``folder`` (new), with its manifest last, then renamed to ``final``:
    the handle of ``final``, or None when another run wrote ``final`` meanwhile (theirs is kept)."""
    folder.mkdir(parents=True)
    handle = spill(network, str(folder))
    files = {  # from the arrays in memory: reading the files back would map them all again
        name: {
            "nbytes": int(array.nbytes),
            "dtype": np.asarray(array).dtype.str,
            "shape": list(array.shape),
            "checksum": array_checksum(array),
        }
        for name, array in spill_layout(network)[2].items()
    }
    manifest = {"format": FORMAT, "layout": handle.layout, "scalars": handle.scalars, "files": files}
    (folder / LOCK).touch()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    try:
        folder.rename(final)
    except OSError:  # another run wrote the same entry meanwhile: keep theirs
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return NetworkFiles(folder=str(final), layout=handle.layout, scalars=handle.scalars)


def read_entry(folder: Path, checksums: bool = True) -> NetworkFiles:
    """The entry's handle once every file checks out against the manifest (sizes, dtypes,
    shapes and, unless ``checksums`` is False, every byte); ValueError if not."""
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"format {manifest.get('format')!r}")
    files = manifest["files"]
    if sorted(files) != [p.name for p in _files(folder)]:
        raise ValueError("its files are not those of its manifest")
    for name, want in files.items():
        array = np.load(folder / name, mmap_mode="r", allow_pickle=False)
        got = {"nbytes": int(array.nbytes), "dtype": array.dtype.str, "shape": list(array.shape)}
        if any(got[k] != want[k] for k in got):
            raise ValueError(f"{name} is {got}, the manifest says {want}")
        if checksums and array_checksum(array) != want["checksum"]:
            raise ValueError(f"{name} does not match its checksum")
    scalars = {key: tuple(value) for key, value in manifest["scalars"].items()}
    return NetworkFiles(folder=str(folder), layout=manifest["layout"], scalars=scalars)


def _lock(folder: Path, mode: int):
    """An flock on the entry's lock file (``mode`` fcntl.LOCK_SH or LOCK_EX | LOCK_NB)."""
    handle = open(folder / LOCK, "rb")
    try:
        fcntl.flock(handle, mode)
    except OSError:
        handle.close()
        raise
    return handle


def evict(root: Path, budget_bytes: int, keep: Path | None = None) -> list[Path]:
    """Remove the least recently used entries of ``root`` (by their manifest's time) until
    the entries hold at most ``budget_bytes``; ``keep`` and entries locked by a run stay.
    Leftover partial entries of runs that died are removed too. Returns what was removed."""
    removed = []
    entries = []
    for folder in root.iterdir() if root.is_dir() else []:
        if folder.name.startswith(".") and time.time() - folder.stat().st_mtime > 3600:
            shutil.rmtree(folder, ignore_errors=True)  # a partial entry an hour old: its writer is gone
            continue
        manifest = folder / MANIFEST
        if folder.name.startswith(".") or not manifest.exists():
            continue
        size = sum(p.stat().st_size for p in folder.iterdir())
        entries.append((manifest.stat().st_mtime, folder, size))
    total = sum(size for _, _, size in entries)
    for _, folder, size in sorted(entries, key=lambda e: e[0]):
        if total <= budget_bytes:
            break
        if keep is not None and folder == keep:
            continue
        try:
            handle = _lock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # in use by a run
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            handle.close()
        total -= size
        removed.append(folder)
    return removed


def use(final: Path):
    """(shared lock, handle) of the entry ``final`` if it is there and checks out, else
    (None, None); a damaged entry is removed, with one line on stderr."""
    if not final.exists():
        return None, None  # entries appear whole, by rename: one without its manifest is damaged
    held = None
    try:
        held = _lock(final, fcntl.LOCK_SH)
        files = read_entry(final)
        os.utime(final / MANIFEST)  # used now: the last to be evicted
        return held, files
    except UNREADABLE as why:
        if held is not None:
            held.close()
        print(f"network cache {final}: damaged ({why}); removed, building the network again", file=sys.stderr)
        shutil.rmtree(final, ignore_errors=True)
        return None, None


def store(network: Network, root: Path, final: Path, budget: int):
    """Write ``network`` as the entry ``final`` and evict beyond ``budget``: (shared lock,
    handle), or (None, None) where the folder cannot be written (one line on stderr)."""
    held = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        ours = write_entry(network, root / f".{final.name}.{os.getpid()}", final)
        held = _lock(final, fcntl.LOCK_SH)
        files = ours if ours is not None else read_entry(final)  # ours needs no second check
    except UNREADABLE as why:
        if held is not None:
            held.close()
        print(f"network cache {root}: not written ({why}); the network is built in every run", file=sys.stderr)
        return None, None
    evict(root, budget, keep=final)
    return held, files


def holds(towns, forced: np.ndarray, radii: dict, core_floor: float | None, budget_gib: float) -> bool:
    """Whether the cache has a finished entry for this network (its manifest written; not
    checked here: :func:`opened` checks it in full, and rebuilds it if it does not check out)."""
    if float(budget_gib) <= 0:
        return False
    return (cache_folder() / entry_key(towns, forced, radii, core_floor)[:32] / MANIFEST).is_file()


@contextlib.contextmanager
def opened(
    towns,
    forced: np.ndarray,
    radii: dict,
    core_floor: float | None,
    budget_gib: float,
    files_now: bool = True,
    building=None,
):
    """``(network, files)`` for a run: from the cache when it holds this network whole,
    else built by :func:`~agglo.engine.network.build.prepare` and written to it. ``files`` is
    the entry's :class:`~agglo.engine.network.build.NetworkFiles`, held under a shared lock until
    the ``with`` block ends, or None where the network is not cached. With ``files_now``
    False (a run that does not map the files) a new entry is written by a thread while the
    run computes, and ``files`` is None. ``building``: called before a network is built.
    The build runs so that Ctrl-C and SIGTERM stop it at once (engine/executors/interrupts.py)."""

    def build():
        if building is not None:
            building()
        return native(prepare, towns, forced, radii, core_floor, stop_at_first=True)

    budget = int(float(budget_gib) * 2**30)
    if budget <= 0:
        yield build(), None
        return
    root = cache_folder()
    final = root / entry_key(towns, forced, radii, core_floor)[:32]
    held, files = use(final)
    network = None
    writer = None
    if held is None:
        network = build()
        if network.nbytes > budget:
            yield network, None
            return
        if files_now:
            held, files = store(network, root, final, budget)
        else:
            got: list = []
            writer = threading.Thread(target=lambda: got.extend(store(network, root, final, budget)), daemon=True)
            writer.start()
    try:
        yield (network if network is not None else mapped(files)), (files if writer is None else None)
    finally:
        if writer is not None:
            writer.join()
            held = got[0] if got else None
        if held is not None:
            held.close()
