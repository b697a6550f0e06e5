"""Bad input: exit code 2, one line naming the file/row or key, the value and what is allowed;
no traceback; no store written; an existing store never silently replaced."""

import os
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import SMALL

GOOD = pd.DataFrame(
    {
        "town_id": [1, 2, 3],
        "name": ["a", "b", "c"],
        "lat": [17.0, 17.1, 17.2],
        "lon": [-96.0, -96.1, -96.2],
        "population": [200000.0, 3000.0, 900.0],
    }
)


def _table(tmp_path, frame, name="towns.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def _broken(column, row, value):
    frame = GOOD.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


TABLE_CASES = {
    "missing column": (GOOD.drop(columns="lat"), ["missing column 'lat'", "required columns"]),
    "NaN lat": (_broken("lat", 1, None), ["row 3", "'lat'", "None", "[-90, 90]"]),
    "lat out of range": (_broken("lat", 0, 95.0), ["row 2", "'lat'", "95", "[-90, 90]"]),
    "lon out of range": (_broken("lon", 2, -200.0), ["row 4", "'lon'", "-200", "[-180, 180]"]),
    "population zero": (_broken("population", 1, 0.0), ["row 3", "'population'", "0", "> 0"]),
    "population NaN": (_broken("population", 0, None), ["row 2", "'population'", "None", "> 0"]),
    "duplicate id": (_broken("town_id", 2, 1), ["row 4", "'town_id'", "1", "unique"]),
    "no rows": (GOOD.iloc[0:0], ["no rows"]),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bad_table(case, suffix, tmp_path, run_cli):
    frame, needles = TABLE_CASES[case]
    path = _table(tmp_path, frame, "towns" + suffix)
    store = tmp_path / "cube.zarr"
    code, out, err = run_cli(
        "run", "data.source=table", f"data.path={path}", f"store.path={store}", "executor.kind=synchronous"
    )
    assert code == 2
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err
    assert str(path) in line
    for needle in needles:
        assert needle in line, (needle, line)
    assert not store.exists()


CONFIG_CASES = {
    "unknown country": (["data.country=XX"], ["data.country", "'XX'", "allowed"]),
    "unknown admin1": (["data.admin1=[99]"], ["data.admin1", "'99'", "allowed: 01"]),
    "negative cap": (["commute.cap_min=-5"], ["commute.cap_min", "-5", ">= 0"]),
    "threshold above 1": (["freight.threshold=1.5"], ["freight.threshold", "1.5", "[0, 1]"]),
    "unknown decay": (["commute.decay=linear"], ["commute.decay", "'linear'", "power, exponential"]),
    "unknown model": (["freight.model=intervening"], ["freight.model", "'intervening'", "gravity"]),
    "not a number": (["commute.beta=abc"], ["commute.beta", "abc"]),
    "unknown key": (["commute.speed=3"], ["commute.speed"]),
    "swept key does not exist": (["commute.cap=30,60"], ["commute.cap", "allowed"]),
    "swept data key": (["data.min_population=500,1000"], ["data.min_population", "cannot be swept", "allowed"]),
    "bad swept value": (["commute.cap_min=30,-1"], ["commute.cap_min", "-1", ">= 0"]),
    "unknown core id": (["cores.ids=[123456789]"], ["cores.ids", "123456789", "allowed"]),
    "closed borders without regions": (None, ["borders", "region", "allowed"]),
    "unknown store mode": (["store.mode=append"], ["store.mode", "'append'", "resume, overwrite, fail"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config(case, tmp_path, run_cli):
    overrides, needles = CONFIG_CASES[case]
    store = tmp_path / "cube.zarr"
    if overrides is None:
        path = _table(tmp_path, GOOD)
        overrides = ["data.source=table", f"data.path={path}", "borders=closed", "cores.ids=[]"]
    base = ["data.admin1=[20]"] if "data.admin1" not in " ".join(overrides) else []
    code, out, err = run_cli("run", *base, *overrides, f"store.path={store}", "executor.kind=synchronous")
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err, err
    for needle in needles:
        assert needle in line, (needle, line)
    assert not store.exists()


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path):
    store = tmp_path / "cube.zarr"
    proc = subprocess.run(
        [sys.executable, "-m", "agglo.cli", "run", "commute.cap_min=-1", f"store.path={store}"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("agglo: error: commute.cap_min = -1.0")
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not store.exists()


def _snapshot(path):
    return {p: os.path.getmtime(p) for p in sorted(str(x) for x in path.rglob("*"))}


def test_store_modes(tmp_path, run_cli):
    store = tmp_path / "cube.zarr"
    args = [*SMALL, "commute.cap_min=30,60", f"store.path={store}"]
    code, out, err = run_cli("run", *args)
    assert code == 0, err
    before = _snapshot(store)
    # Same configuration: reused, nothing recomputed, summary printed.
    code, out, err = run_cli("run", *args)
    assert code == 0 and "already complete" in err and "coverage" in out
    assert _snapshot(store) == before
    # Different configuration: refused, naming the keys; store untouched.
    code, out, err = run_cli("run", *args, "freight.beta=2.5", "commute.threshold=0.2")
    assert code == 2
    assert "commute.threshold" in err and "freight.beta" in err and "store.mode=overwrite" in err
    assert _snapshot(store) == before
    # A different sweep is a different configuration too.
    code, out, err = run_cli("run", *SMALL, "commute.cap_min=30,90", f"store.path={store}")
    assert code == 2 and "sweep.grid" in err
    # fail refuses any existing store.
    code, out, err = run_cli("run", *args, "store.mode=fail")
    assert code == 2 and "store.mode=fail" in err
    assert _snapshot(store) == before
    # overwrite replaces.
    code, out, err = run_cli("run", *args, "freight.beta=2.5", "store.mode=overwrite")
    assert code == 0, err
    import xarray as xr

    assert "beta: 2.5" in xr.open_zarr(store).attrs["config"]


def test_a_directory_that_is_not_a_cube_is_never_replaced(tmp_path, run_cli):
    store = tmp_path / "precious"
    store.mkdir()
    (store / "thesis.txt").write_text("years of work")
    code, out, err = run_cli("run", *SMALL, f"store.path={store}", "store.mode=overwrite")
    assert code == 2 and "not an agglo cube" in err
    assert (store / "thesis.txt").read_text() == "years of work"
