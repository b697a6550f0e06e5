"""Verified batches (issue #17, first part): a damaged chunk is found, named and recomputed.

Each batch's completion record carries a SHA-256 per variable of the values it wrote
(``progress/batch_sha256``); ``agglo verify`` and every resume check them.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

from agglo.engine.store.layout import VARIABLES
from tests.conftest import SMALL
from tests.test_failures import agglo, assert_same, one_line

GRID = [*SMALL, "commute.cap_min=20,40,60", "freight.cap_min=120,240", "executor.batch_size=2"]
SAMPLE = [*SMALL, "sweep.grid={}", "sweep.sampler=lhs", "sweep.n=6", "sweep.bounds={commute.cap_min:[20,90]}"]


def _mtimes(store):
    return {str(p): p.stat().st_mtime_ns for name in VARIABLES for p in (store / name / "c").rglob("*") if p.is_file()}


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_damaged_chunk_is_found_named_and_recomputed(damage, tmp_path, run_cli):
    store, clean = tmp_path / "d.zarr", tmp_path / "clean.zarr"
    assert run_cli("run", *GRID, f"store.path={store}", "--quiet")[0] == 0
    shutil.copytree(store, clean)
    chunk = store / "core" / "c" / "1" / "0" / "0" / "0"  # batch 1: commute.cap_min=40
    if damage == "truncated":
        chunk.write_bytes(b"")  # a partial write, a full disk, a copy gone wrong
    else:
        shutil.copy(store / "core" / "c" / "0" / "0" / "0" / "0", chunk)  # decodes fine, wrong values
    rc, out, err = agglo("verify", store)
    assert rc == 1 and "Traceback" not in err, err
    assert "1 of 3 written batches have chunks missing or not matching" in out
    assert "batch 1 (commute.cap_min=40, freight.cap_min=120..240)" in out
    rc, _, err = agglo("info", store)  # a reader refuses it before it reads a number
    assert rc == 2
    one_line(err, "damaged", "commute.cap_min=40", "agglo run")
    before = _mtimes(store)
    rc, _, err = run_cli("run", *GRID, f"store.path={store}")
    assert rc == 0, err
    assert "1 written batch(es) have chunks missing or not matching" in err and "commute.cap_min=40" in err
    assert "(1 left to compute)" in err
    after = _mtimes(store)
    rewritten = {k for k in before if before[k] != after.get(k)}
    assert rewritten and all("/c/1/" in k for k in rewritten), rewritten  # exactly that batch
    assert_same(store, clean)
    rc, out, _ = agglo("verify", store)
    assert rc == 0 and "verified, every variable and coordinate as written, all 3 written batches" in out


def test_verify_a_sampled_cube_and_refusals(tmp_path, run_cli):
    store = tmp_path / "s.zarr"
    assert run_cli("run", *SAMPLE, "executor.batch_size=2", f"store.path={store}", "--quiet")[0] == 0
    rc, out, _ = agglo("verify", store)
    assert rc == 0 and "all 3 written batches" in out
    sums = zarr.open_array(str(store / "progress" / "batch_sha256"), mode="r")[...]
    assert sums.shape == (3, len(VARIABLES), 32) and (sums != 0).any(axis=2).all()
    root = zarr.open_group(str(store), mode="r+", use_consolidated=False)
    values = root["share"][2:4]
    root["share"][2:4] = np.where(np.isnan(values), values, values * np.float32(0.5))  # an edit behind agglo's back
    rc, out, _ = agglo("verify", store)
    assert rc == 1 and "batch 1 (commute.cap_min=" in out and ".." in out
    rc, _, err = agglo("verify", tmp_path / "nowhere.zarr")
    assert rc == 2
    one_line(err, "no such store")
    (tmp_path / "plain").mkdir()
    rc, _, err = agglo("verify", tmp_path / "plain")
    assert rc == 2
    one_line(err, "not an agglo result cube")
