"""One writer at a time (issue #17): the store's writer lease, real processes, real stores.

The rules (engine/store/lease.py): a lease beside the store names its holder; a second writer,
whatever its store.mode, is refused with one line naming the holder; a lease whose holder is
a dead process of this host, or whose heartbeat is older than store.lease_timeout_s, is
taken over with a message; a batch whose run lost the lease is not marked done.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agglo.engine.errors import UserError
from agglo.engine.store import lease
from agglo.engine.store.reading import batch_done
from tests.conftest import SMALL
from tests.test_failures import agglo, assert_same, one_line
from tests.test_resume import _wait_for_batches

# About 15 s of batches on 2 cores: long enough for a second process to start and be refused.
LONG_SWEEP = [
    "experiment=synthetic",
    "data.n=2500",
    "cores.min_population=20000",
    "commute.cap_min=range(10,130,1)",
    "freight.beta=0.5,1.0,1.5",
    "executor.batch_size=2",
    "executor.kind=synchronous",
]


def _write_record(store, **fields) -> Path:
    """A lease record written by hand: another writer's (by default on another host, alive)."""
    now = time.time()
    record = {
        "token": "f" * 32,
        "host": "elsewhere.example",
        "pid": 4242,
        "pid_start": "",
        "command": "agglo run",
        "started": now - 30,
        "heartbeat": now,
        **fields,
    }
    path = Path(lease.lease_path(str(store)))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Under the lease's own lock, as a writer taking it would: a plain write_text truncates
    # first, and a holder reading in between would see no lease at all.
    lease._transact(str(path), lambda found: (lease.Holder(**record), None))
    return path


def _finished_pid() -> int:
    """The PID of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --- the rules, on the lease alone ---------------------------------------------------------


def test_second_holder_refused_then_free_after_release(tmp_path):
    store = str(tmp_path / "a.zarr")
    first = lease.acquire(store, "agglo run")
    path = Path(lease.lease_path(store))
    assert path.exists() and path.parent == tmp_path and path.name == ".a.zarr.lease"
    record = json.loads(path.read_text())
    assert record["host"] == socket.gethostname() and record["pid"] > 0 and record["token"] == first.token
    with pytest.raises(UserError) as refused:
        lease.acquire(store, "agglo analyze")
    text = str(refused.value)
    assert f"PID {record['pid']}" in text and record["host"] in text and "agglo run" in text and "allowed" in text
    assert lease.holds(store, first.token)
    first.release()
    assert not path.exists()
    lease.acquire(store, "agglo run").release()


@pytest.mark.parametrize(
    "fields, reason",
    [
        (lambda: {"host": socket.gethostname(), "pid": _finished_pid()}, "is not running on this host"),
        (lambda: {"heartbeat": time.time() - 600}, "no heartbeat for 600 s"),
        (lambda: {"host": socket.gethostname(), "pid": 1, "pid_start": "-1"}, "is not running on this host"),
    ],
    ids=["dead-pid", "old-heartbeat", "reused-pid"],
)
def test_stale_lease_is_taken_over_with_a_message(tmp_path, capsys, fields, reason):
    store = str(tmp_path / "s.zarr")
    _write_record(store, **fields())
    taken = lease.acquire(store, "agglo run", timeout_s=120)
    err = capsys.readouterr().err
    assert "taking over the writer lease of agglo run" in err and reason in err, err
    assert lease.holds(store, taken.token)
    taken.release()


def test_unreadable_lease_is_taken_over(tmp_path, capsys):
    store = str(tmp_path / "u.zarr")
    path = _write_record(store)
    path.write_text('{"token": "abc", "host"')  # a holder killed while writing its record
    lease.acquire(store, "agglo run").release()
    assert "not a lease record" in capsys.readouterr().err


def test_live_lease_of_another_host_is_refused(tmp_path):
    store = str(tmp_path / "h.zarr")
    path = _write_record(store, heartbeat=time.time() - 60)
    before = path.read_bytes()
    with pytest.raises(UserError, match=r"being written by agglo run \(host elsewhere\.example, PID 4242"):
        lease.acquire(store, "agglo run", timeout_s=120)
    assert path.read_bytes() == before, "a refused writer changes nothing"


def test_heartbeat_renews_only_its_own_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    store = str(tmp_path / "b.zarr")
    held = lease.acquire(store, "agglo run")
    first = lease.read(store).heartbeat
    time.sleep(0.4)
    assert lease.read(store).heartbeat > first
    other = _write_record(store)  # taken from us (say our heartbeat was late)
    taken = other.read_bytes()
    time.sleep(0.3)
    assert other.read_bytes() == taken, "a lost lease is never written again by its old holder"
    with pytest.raises(lease.LeaseLost, match="now held by agglo run .host elsewhere"):
        lease.check(store, held.token, "batch 3 was not written")
    held.release()
    assert other.read_bytes() == taken, "nor removed by it"


def test_one_winner_among_simultaneous_writers(tmp_path):
    """Six processes ask for the lease at the same instant: exactly one gets it (flock)."""
    store = str(tmp_path / "race.zarr")
    start = time.time() + 2.0
    code = textwrap.dedent(
        f"""
        import time
        from agglo.engine.store import lease
        from agglo.engine.errors import UserError
        time.sleep(max(0.0, {start} - time.time()))
        try:
            held = lease.acquire({store!r}, "agglo run")
        except UserError:
            print("refused")
        else:
            time.sleep(1.5)
            held.release()
            print("won")
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(6)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["refused"] * 5 + ["won"], outcomes


def test_object_store_lease_has_the_same_rules():
    store = f"memory://leases/{time.time_ns()}/x.zarr"
    first = lease.acquire(store, "agglo run")
    with pytest.raises(UserError, match="being written by agglo run"):
        lease.acquire(store, "agglo run")
    assert lease.holds(store, first.token)
    first.release()
    assert lease.read(store) is None
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file(lease.lease_path(store), json.dumps({"garbage": 1}).encode())
    lease.acquire(store, "agglo run").release()


# --- with real runs ------------------------------------------------------------------------


def test_second_writer_refused_while_the_first_finishes_like_a_clean_run(tmp_path, run_cli):
    store = tmp_path / "busy.zarr"
    first = subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *LONG_SWEEP, f"store.path={store}", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_batches(store, 2, first)
    before = batch_done(str(store)).sum()
    # A different config with store.mode=overwrite (the case of the issue), then the same config.
    for extra in (["commute.beta=2.5", "store.mode=overwrite"], []):
        rc, _, err = agglo("run", *LONG_SWEEP, *extra, f"store.path={store}")
        assert rc == 2, err
        one_line(err, "is being written by agglo run", f"PID {first.pid}", socket.gethostname())
    assert first.poll() is None, "the first run ended before the second was refused: the sweep is too short"
    assert batch_done(str(store)).sum() >= before  # the store was not replaced under it
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert not Path(lease.lease_path(str(store))).exists()
    clean = tmp_path / "clean.zarr"  # in batches of 64: the same bits (tests/test_cube.py), sooner
    assert run_cli("run", *LONG_SWEEP, "executor.batch_size=64", f"store.path={clean}", "--quiet")[0] == 0
    assert_same(store, clean)


@pytest.mark.distributed
def test_batches_of_a_run_that_lost_its_lease_are_not_marked(tmp_path, run_cli):
    """The lease taken from a running sweep on the local Dask cluster: its workers stop
    marking batches, the run stops with one line, and the new holder's lease is left as is."""
    store = tmp_path / "lost.zarr"
    args = [a for a in LONG_SWEEP if not a.startswith("executor.kind")]
    args += ["executor.kind=local", "executor.n_workers=2", "executor.threads_per_worker=1"]
    args += ["executor.compute_while_starting=false"]
    run = subprocess.Popen(
        [sys.executable, "-m", "agglo.cli", "run", *args, f"store.path={store}", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_batches(store, 4, run, limit_s=240)
    path = _write_record(store)
    taken = path.read_bytes()
    at_takeover = int(batch_done(str(store)).sum())
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2, err
    one_line(err, "lost its writer lease", "now held by agglo run (host elsewhere.example")
    done = batch_done(str(store))
    # Only batches past their last check when the lease changed hands (one per worker thread) may follow.
    assert at_takeover <= done.sum() <= at_takeover + 2 < done.size
    assert path.read_bytes() == taken, "the new holder's lease is left as it is"
    # What it did mark is whole: every marked batch matches its checksums.
    code, out, err = run_cli("verify", str(store))
    assert code == 0 and "verified" in out, out + err


def test_run_and_analyze_exclude_each_other(tmp_path, run_cli):
    store = tmp_path / "small.zarr"
    assert run_cli("run", *SMALL, f"store.path={store}", "--quiet")[0] == 0
    held = lease.acquire(str(store), "agglo analyze")
    try:
        code, _, err = run_cli("run", *SMALL, f"store.path={store}", "store.mode=overwrite")
        assert code == 2 and "is being written by agglo analyze" in err, err
        code, out, _ = run_cli("info", str(store))
        assert code == 0 and "writer: agglo analyze (host" in out
    finally:
        held.release()
    _write_record(store)
    code, _, err = run_cli("analyze", str(store))
    assert code == 2 and "is being written by agglo run (host elsewhere.example" in err, err
    Path(lease.lease_path(str(store))).unlink()
    code, out, err = run_cli("analyze", str(store))
    assert code == 0, err
    assert not Path(lease.lease_path(str(store))).exists()


def test_lease_timeout_is_checked(tmp_path):
    rc, _, err = agglo("run", *SMALL, f"store.path={tmp_path / 'x.zarr'}", "store.lease_timeout_s=5")
    assert rc == 2
    one_line(err, "store.lease_timeout_s = 5", "at least 20")
    assert not (tmp_path / "x.zarr").exists() and not list(tmp_path.iterdir())


def test_stale_lease_records_are_told_apart_from_live_ones():
    """why_stale on its own: the rule is the host, the process and the heartbeat."""
    now, pid = time.time(), os.getpid()
    me = lease.Holder("t", socket.gethostname(), pid, lease._process_start(pid), "x", now, now)
    assert lease.why_stale(me, 120, now) is None
    assert lease.why_stale(me, 120, now + 121) is not None  # even a live process: its heartbeat is late
    far = lease.Holder("t", "elsewhere", 1, "", "x", now, now - 100)
    assert lease.why_stale(far, 120, now) is None and "no heartbeat" in lease.why_stale(far, 60, now)
    assert lease.MIN_TIMEOUT_S >= 4 * lease.HEARTBEAT_S
