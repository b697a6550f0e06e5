"""No traceback for a user-facing failure (issue #18): real processes, real stores.

Each case asserts one line on stderr, the exit code, no traceback, and that the store it
leaves is finished by the same command, bit-identical to a clean run. The cases that need
a read-only or a full disk mount a small tmpfs (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from agglo.engine.store.layout import VARIABLES
from tests.conftest import SMALL
from tests.test_resume import _wait_for_batches

SWEEP = [*SMALL, "commute.cap_min=20,40,60,80", "executor.batch_size=1"]


def agglo(*args, cwd=None, timeout=240):
    """``agglo ARGS`` in a fresh interpreter: (exit code, stdout, stderr)."""
    done = subprocess.run(
        [sys.executable, "-m", "agglo.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr


def one_line(err: str, *words: str) -> str:
    """stderr is exactly one 'agglo: error:' line with an 'allowed' part (and ``words``)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("agglo: error: ") and "allowed" in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def cube(path) -> dict:
    root = zarr.open_group(str(path), mode="r", use_consolidated=False)
    return {name: root[name][...] for name in VARIABLES}


def assert_same(a, b) -> None:
    x, y = cube(a), cube(b)
    for name in VARIABLES:
        assert np.array_equal(x[name], y[name], equal_nan=True), name


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The clean cubes the damaged ones must equal."""
    store = tmp_path_factory.mktemp("clean") / "sweep.zarr"
    rc, _, err = agglo("run", *SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0, err
    return {"sweep": store}


# --- the template's setup interrupted ------------------------------------------------------


def _launch(store):
    return subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *SWEEP, f"store.path={store}", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_setup_interrupted_at_many_points(sig, tmp_path, clean, run_cli):
    """Kill the driver before and all through the template's setup: the store is absent or
    whole, and the same command then finishes it, bit for bit."""
    points = [("launch", 0.0), ("launch", 0.4)] + [("setup", d) for d in (0.0, 0.002, 0.008, 0.03, 0.1)]
    for k, (after, delay) in enumerate(points):
        store = tmp_path / f"s{k}.zarr"
        partial = tmp_path / f".s{k}.zarr.partial"
        proc = _launch(store)
        if after == "setup":
            deadline = time.time() + 60
            while (
                not (partial.exists() or (store / "zarr.json").exists())
                and proc.poll() is None
                and time.time() < deadline
            ):
                time.sleep(0.0005)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGINT and after == "setup":
            assert "Traceback" not in err, (k, err)
            assert proc.returncode in (0, 130), (k, proc.returncode, err)
        # What is left is never a half-made template under the asked name.
        if store.exists():
            assert (store / "zarr.json").exists() and (store / "progress" / "batch_done").exists(), k
        rc, _, err = run_cli("run", *SWEEP, f"store.path={store}", "--quiet")  # the same command
        assert rc == 0, (k, err)
        assert_same(store, clean["sweep"])
        assert not partial.exists()


def _drop_consolidated(store: Path) -> None:
    root = store / "zarr.json"
    meta = json.loads(root.read_text())
    meta.pop("consolidated_metadata", None)
    root.write_text(json.dumps(meta))


@pytest.mark.slow
def test_unfinished_template_is_rebuilt(tmp_path, clean):
    """A template without its consolidated metadata (the last thing written: an object store
    or an older engine stopped during setup) is refused by every reader in one line, and
    rebuilt by the same run."""
    store = tmp_path / "t.zarr"
    rc, _, err = agglo("run", *SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0, err
    shutil.rmtree(store / "core" / "c", ignore_errors=True)  # a template has no chunks yet
    _drop_consolidated(store)
    for command in (["info", store], ["analyze", store], ["plot", store, "--out", tmp_path / "figs"]):
        rc, _, err = agglo(*command)
        assert rc == 2
        one_line(err, "unfinished template", "agglo run")
    rc, _, err = agglo("run", *SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0 and "rebuilding it" in err, err
    assert_same(store, clean["sweep"])


@pytest.mark.slow
def test_cube_without_progress_record(tmp_path, clean):
    store = tmp_path / "p.zarr"
    rc, _, err = agglo("run", *SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0, err
    shutil.rmtree(store / "progress")
    for command in (["info", store], ["analyze", store], ["plot", store, "--out", tmp_path / "figs"]):
        rc, _, err = agglo(*command)
        assert rc == 2
        one_line(err, "progress", "agglo run")
    rc, _, err = agglo("run", *SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0 and "recomputing every batch" in err, err
    assert_same(store, clean["sweep"])
    assert agglo("info", store)[0] == 0


# --- output locations ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def towns_csv(tmp_path_factory):
    from agglo.engine.data.towns import synthetic

    path = tmp_path_factory.mktemp("towns") / "towns.csv"
    synthetic(120, 3).frame().to_csv(path, index=False)
    return path


def test_output_paths_are_checked_before_any_work(tmp_path, clean, towns_csv):
    one = [*SMALL, "sweep.grid={}"]
    rc, _, err = agglo("flows", *one, "--out", "/nonexistent/x.parquet")
    assert rc == 2
    one_line(err, "/nonexistent")
    flows = tmp_path / "flows.csv"
    ids = pd.read_csv(towns_csv)["town_id"].tolist()
    flows.write_text("origin,destination,flow\n" + "".join(f"{ids[i]},{ids[i + 1]},{10 + i}\n" for i in range(8)))
    rc, _, err = agglo("calibrate", "--flows", flows, "--towns", towns_csv, "--out", "/nonexistent/d/fit.yaml")
    assert rc == 2
    one_line(err, "/nonexistent")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    rc, _, err = agglo("plot", clean["sweep"], "--out", a_file)
    assert rc == 2
    one_line(err, "is a file")
    assert a_file.read_text() == "x"
    rc, _, err = agglo("run", *SWEEP, f"store.path={a_file}/x.zarr")
    assert rc == 2
    one_line(err, "is a file")
    rc, _, err = agglo("run", *SWEEP, f"store.path={a_file}")
    assert rc == 2
    one_line(err, "is a file")


@pytest.fixture
def mount(tmp_path):
    """mount(size) -> a fresh tmpfs folder; .remount(options) changes it (root only)."""
    mounted = []

    class Mount:
        def __init__(self, size: str):
            self.path = tmp_path / f"mnt{len(mounted)}"
            self.path.mkdir()
            done = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.path)], capture_output=True
            )
            if done.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not root'})")
            mounted.append(self.path)

        def remount(self, options: str) -> None:
            subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)

    yield Mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_location(tmp_path, clean, mount):
    m = mount("20m")
    store = m.path / "r.zarr"
    rc, _, err = agglo("run", *SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0, err
    before = {str(p): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    m.remount("ro")
    rc, _, err = agglo("analyze", store)
    assert rc == 2
    one_line(err, "agglo analyze", "writable")
    rc, _, err = agglo("run", *SWEEP, f"store.path={m.path / 'new.zarr'}", "--quiet")
    assert rc == 2
    one_line(err, "store.path", "writable")
    rc, _, err = agglo("run", *SWEEP, "store.mode=overwrite", f"store.path={store}", "--quiet")
    assert rc == 2
    one_line(err, "store.path", "writable")
    assert {str(p): p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    m.remount("rw")
    assert agglo("analyze", store)[0] == 0


LONG = [*SMALL, "data.n=300", "commute.cap_min=range(20,120,2.5)", "executor.batch_size=1"]  # 40 batches


def _blocks(path: Path) -> int:
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in path.rglob("*") if p.is_file())


def test_disk_full_mid_sweep_is_one_line_and_resumable(tmp_path, mount):
    clean = tmp_path / "clean.zarr"
    rc, _, err = agglo("run", *LONG, f"store.path={clean}", "--quiet")
    assert rc == 0, err
    full = _blocks(clean)
    template = _blocks(clean) - sum(
        -(-p.stat().st_size // 4096) * 4096
        for name in VARIABLES
        for p in (clean / name / "c").rglob("*")
        if p.is_file()
    )
    per_batch = (full - template) / 40
    # Room for the template and about 15 of the 40 batches (tmpfs sizes are in pages).
    m = mount(f"{int(template + 15 * per_batch + 64 * 1024) // 1024}k")
    store = m.path / "f.zarr"
    rc, _, err = agglo("run", *LONG, f"store.path={store}", "--quiet")
    assert rc == 2
    one_line(err, "No space left on device", "resumable")
    done = zarr.open_array(str(store / "progress" / "batch_done"), mode="r")[:]
    assert 0 < done.sum() < done.size, done.sum()
    m.remount("size=20m")
    rc, _, err = agglo("run", *LONG, f"store.path={store}", "--quiet")
    assert rc == 0, err
    assert_same(store, clean)


# --- calibrate, --params, tables -----------------------------------------------------------


def test_calibrate_edges(tmp_path, towns_csv):
    ids = pd.read_csv(towns_csv)["town_id"].tolist()
    cases = {
        "header-only": ("origin,destination,flow\n", "no rows"),
        "self-only": (f"origin,destination,flow\n{ids[0]},{ids[0]},5\n{ids[1]},{ids[1]},3\n", "two different places"),
        "duplicate": (f"origin,destination,flow\n{ids[0]},{ids[1]},5\n{ids[0]},{ids[1]},3\n", "repeats row 2"),
        "empty": ("", "cannot be read"),
    }
    for name, (text, words) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text(text)
        rc, _, err = agglo("calibrate", "--flows", path, "--towns", towns_csv)
        assert rc == 2, name
        one_line(err, words)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"origin,destination,flow\n{ids[0]},{ids[1]},5 \xe9\n".encode("latin-1"))
    rc, _, err = agglo("calibrate", "--flows", latin, "--towns", towns_csv)
    assert rc == 2
    one_line(err, "not UTF-8")
    params = tmp_path / "p.yaml"
    params.write_bytes("commute:\n  beta: 2.0 # caf\xe9\n".encode("latin-1"))
    rc, _, err = agglo("run", *SMALL, "--params", params)
    assert rc == 2
    one_line(err, "--params", "not UTF-8")


def test_town_tables_and_messages(tmp_path, towns_csv):
    frame = pd.read_csv(towns_csv)
    text_lat = frame.assign(lat=frame["lat"].map(repr))
    text_lat.to_parquet(tmp_path / "text_lat.parquet")
    frame.assign(population=frame["population"] > 0).to_parquet(tmp_path / "bool_pop.parquet")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "latin.csv").write_bytes("town_id,name,lat,lon,population\n1,Mu\xf1oz,17,-96,1000\n".encode("latin-1"))
    expected = {
        "text_lat.parquet": "column 'lat'",
        "bool_pop.parquet": "column 'population'",
        "empty.csv": "cannot be read",
        "latin.csv": "not UTF-8",
    }
    store = tmp_path / "never.zarr"
    for name, words in expected.items():
        rc, _, err = agglo("run", "data.source=table", f"data.path={tmp_path / name}", f"store.path={store}")
        assert rc == 2, name
        one_line(err, words)
    assert not store.exists()
    table = tmp_path / "scenarios.csv"
    table.write_text("commute.cap_min\n30\n-5\n")
    for args, words in [
        (["commute.cap_min=abc"], "commute.cap_min = 'abc'"),
        (["commute.cap_min=30,abc"], "value 'abc'"),
        (["commute.cap_min=range(1,"], "cannot parse"),
        (["sweep.grid={}", f"sweep.table={table}"], "row 3"),
    ]:
        rc, _, err = agglo("run", *SMALL, *args, f"store.path={store}")
        assert rc == 2, args
        assert ": None" not in one_line(err, words)
    assert not store.exists()


def test_options_between_overrides_and_the_same_table_by_another_path(tmp_path, towns_csv):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(towns_csv, work / "towns.csv")
    args = ["data.source=table", "cores.ids=[]", "executor.kind=synchronous", "commute.cap_min=30,60"]
    rc, _, err = agglo("run", "data.path=towns.csv", "--quiet", *args, "store.path=c.zarr", cwd=work)
    assert rc == 0, err
    assert err == ""  # --quiet took effect though overrides follow it
    rc, _, err = agglo("run", "data.path=./../work/towns.csv", *args, "store.path=c.zarr", cwd=work)
    assert rc == 0, err
    assert "already complete" in err


@pytest.mark.slow
@pytest.mark.distributed
def test_ctrl_c_on_the_local_cluster(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C) with the default local
    cluster: one line, exit 130 within seconds, and the store resumes to the clean cube."""
    sweep = ["experiment=oaxaca", "commute.cap_min=range(20,120,1)", "freight.cap_min=240,300", "executor.batch_size=8"]
    local = ["executor.kind=local", "executor.compute_while_starting=false"]  # the workers compute
    store = tmp_path / "c.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *sweep, *local, f"store.path={store}", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _wait_for_batches(store, 2, proc)
    t = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.time() - t
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted" in err and took < 10, (took, err)
    done = zarr.open_array(str(store / "progress" / "batch_done"), mode="r")[:]
    assert 0 < done.sum() < done.size
    rc, _, err = agglo("run", *sweep, "executor.kind=synchronous", f"store.path={store}", "--quiet")
    assert rc == 0, err
    clean = tmp_path / "clean.zarr"
    assert agglo("run", *sweep, "executor.kind=synchronous", f"store.path={clean}", "--quiet")[0] == 0
    assert_same(store, clean)


MID_SWEEP = [*SMALL, "data.n=2000", "commute.cap_min=range(10,130,2)", "executor.batch_size=2"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_sweep_stops_after_the_batch_and_resumes(sig, tmp_path, run_cli):
    """SIGINT or SIGTERM to the driver mid-sweep: the batch in flight finishes, one line,
    exit 128 + signal; the same command resumes to the clean cube."""
    store = tmp_path / "m.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *MID_SWEEP, f"store.path={store}", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_batches(store, 3, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + int(sig), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert ("terminated" if sig == signal.SIGTERM else "interrupted") in err
    done = zarr.open_array(str(store / "progress" / "batch_done"), mode="r")[:]
    assert 0 < done.sum() < done.size
    rc, _, err = run_cli("run", *MID_SWEEP, f"store.path={store}", "--quiet")
    assert rc == 0, err
    clean = tmp_path / "clean.zarr"
    assert run_cli("run", *MID_SWEEP, f"store.path={clean}", "--quiet")[0] == 0
    assert_same(store, clean)
