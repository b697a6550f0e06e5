"""Bad input, tried systematically (issue #17): Hypothesis writes town tables and override
lists (random columns, types, NaN/inf, duplicates, encodings, empty files, folders instead
of files) and every run must either succeed or end with exit 2 and one line, no traceback,
no store created, and an existing store byte-for-byte unchanged."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import SMALL

COLUMNS = ["town_id", "name", "lat", "lon", "population", "region", "core"]
CELLS = st.one_of(
    st.integers(-1000, 10_000_000),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.text(alphabet="0123456789.-eE ,\"'abcé\x00\n", max_size=6),
    st.booleans(),
    st.none(),
)


@st.composite
def tables(draw):
    columns = draw(st.lists(st.sampled_from(COLUMNS + ["extra"]), min_size=0, max_size=8))
    n = draw(st.integers(0, 6))
    frame = pd.DataFrame({c: [draw(CELLS) for _ in range(n)] for c in dict.fromkeys(columns)})
    if draw(st.booleans()) and n:  # mostly plausible values, a few cells spoiled
        base = {
            "town_id": list(range(1, n + 1)),
            "name": [f"t{k}" for k in range(n)],
            "lat": list(np.linspace(16, 18, n)),
            "lon": list(np.linspace(-97, -95, n)),
            "population": [float(10 ** (3 + k % 4)) for k in range(n)],
        }
        frame = pd.DataFrame(base).astype(object)
        for _ in range(draw(st.integers(0, 3))):
            frame.loc[draw(st.integers(0, n - 1)), draw(st.sampled_from(list(base)))] = draw(CELLS)
    kind = draw(st.sampled_from(["csv", "csv-latin1", "csv-utf16", "parquet", "empty", "folder", "missing"]))
    return frame, kind


OVERRIDES = st.lists(
    st.one_of(
        st.builds(
            lambda k, v: f"{k}={v}",
            st.sampled_from(
                [
                    "commute.cap_min",
                    "freight.beta",
                    "commute.decay",
                    "executor.batch_size",
                    "cores.min_population",
                    "borders",
                ]
            ),
            st.one_of(
                st.sampled_from(["abc", "-1", "nan", "inf", "1e400", "", "[1,2", "range(1,", "1,1", "{a:1}", "null"]),
                st.floats(-10, 500).map(lambda x: f"{x:.3g}"),
            ),
        ),
        st.sampled_from(["nosuch.key=1", "data.n=0", "sweep.grid={x:[1]}", "=1", "commute=1"]),
    ),
    max_size=3,
)


def _write(frame: pd.DataFrame, kind: str, folder: Path) -> Path:
    path = folder / ("towns.parquet" if kind == "parquet" else "towns.csv")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "missing":
        pass
    elif kind == "parquet":
        try:
            frame.astype({c: object for c in frame.columns}).to_parquet(path)
        except Exception:  # noqa: BLE001 - pyarrow cannot store this mix: write text instead
            frame.astype(str).to_parquet(path)
    else:
        text = frame.to_csv(index=False)
        path.write_bytes(text.encode({"csv": "utf-8", "csv-latin1": "latin-1", "csv-utf16": "utf-16"}[kind], "replace"))
    return path


def _snapshot(store: Path) -> dict:
    return {str(p.relative_to(store)): p.read_bytes() for p in store.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished cube that no bad input may touch."""
    from agglo.cli import main

    store = tmp_path_factory.mktemp("existing") / "cube.zarr"
    assert main(["run", *SMALL, f"store.path={store}", "--quiet"]) == 0
    return store, _snapshot(store)


def _check(run_cli, args, new_store: Path, existing) -> None:
    code, _, err = run_cli(*args)
    assert code in (0, 2), (args, code, err)
    if code == 2:
        lines = [line for line in err.strip().splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("agglo: error: "), (args, err)
        assert "Traceback" not in err
        assert not new_store.exists(), args
    store, before = existing
    assert _snapshot(store) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables(), overrides=OVERRIDES, onto_existing=st.booleans())
def test_fuzzed_town_tables(table, overrides, onto_existing, run_cli, existing):
    frame, kind = table
    folder = Path(tempfile.mkdtemp(prefix="agglo-fuzz-"))
    try:
        path = _write(frame, kind, folder)
        new_store = folder / "new.zarr"
        target = existing[0] if onto_existing else new_store
        args = ["run", "data.source=table", f"data.path={path}", "executor.kind=synchronous", "cores.ids=[]"]
        _check(run_cli, [*args, *overrides, f"store.path={target}", "--quiet"], new_store, existing)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=OVERRIDES, onto_existing=st.booleans())
def test_fuzzed_overrides(overrides, onto_existing, run_cli, existing):
    folder = Path(tempfile.mkdtemp(prefix="agglo-fuzz-"))
    try:
        new_store = folder / "new.zarr"
        target = existing[0] if onto_existing else new_store
        _check(run_cli, ["run", *SMALL, *overrides, f"store.path={target}", "--quiet"], new_store, existing)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
