"""The GeoNames columnar cache: the same towns as the JSON, and never used when stale or damaged."""

import json

import numpy as np
import pytest

from agglo.engine.data import geonames
from agglo.engine.data.towns import load_geonames


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AGGLO_CACHE_DIR", str(tmp_path))
    return tmp_path


def _meta(path):
    with np.load(path) as npz:
        return json.loads(bytes(npz["meta"]).decode())


@pytest.fixture(scope="module")
def json_columns():
    """The columns parsed from the JSON once for the module (tests copy what they change)."""
    return geonames._from_json(geonames.source_file())


def test_cache_is_built_once_and_equals_the_json(cache, json_columns):
    path = geonames.cache_file()
    assert not path.exists()
    first = geonames.places()
    assert path.exists()
    again = geonames.places()
    direct = json_columns
    for name in geonames.Columns._fields:
        assert np.array_equal(getattr(first, name), direct[name]), name
        assert np.array_equal(getattr(again, name), direct[name]), name
    # A town table read through the cache is the JSON's (spot check on names and order).
    towns = load_geonames("MX", ["20"], 500)
    ids = direct["geonameid"]
    k = np.searchsorted(ids, towns.town_id)
    assert np.array_equal(ids[k], towns.town_id) and np.all(np.diff(towns.town_id) > 0)
    blob = direct["name_blob"].tobytes()
    off = direct["name_offsets"]
    assert [blob[off[i] : off[i + 1]].decode() for i in k] == list(towns.name)


def test_stale_cache_is_rebuilt(cache, json_columns):
    path = geonames.cache_file()
    key = geonames._source_key(geonames.source_file())
    columns = dict(json_columns, lat=json_columns["lat"] + 1.0)  # what an older file would hold
    geonames._write(path, columns, dict(key, source_mtime_ns=key["source_mtime_ns"] - 1))
    got = geonames.places()
    assert np.array_equal(got.lat, json_columns["lat"])
    assert _meta(path)["source_mtime_ns"] == key["source_mtime_ns"]


@pytest.mark.parametrize("damage", ["torn", "column"])
def test_damaged_cache_is_detected_and_rebuilt(cache, damage, json_columns):
    path = geonames.cache_file()
    key = geonames._source_key(geonames.source_file())
    geonames._write(path, json_columns, key)
    if damage == "torn":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        # A whole file that records the checksum of the true columns but holds a changed one.
        meta = dict(key, sha256=geonames._checksum(json_columns))
        population = json_columns["population"].copy()
        population[100] += 1.0
        columns = dict(json_columns, population=population)
        assert geonames._checksum(columns) != meta["sha256"]
        with open(path, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **columns)
    assert geonames._read(path, key) is None
    got = geonames.places()
    assert np.array_equal(got.population, json_columns["population"])
    assert geonames._read(path, key) is not None
