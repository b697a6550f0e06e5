"""Executors against each other on the sweeps users run: whole `agglo run` processes.

For the 512-scenario Mexico cap sweep (bench_scale's capsweep) and a 4 096-scenario sweep
(the same with freight.beta swept too), in one run of this script:

- synchronous (the driver alone, Numba threads), the default executor (`executor.kind=auto`),
  the engine's local cluster in each shape tried (workers x threads), and an address
  cluster: a real `dask scheduler` and `dask worker` processes this script starts on
  127.0.0.1;
- each warm (network and Numba caches filled by a first run) and, for the cap sweep, cold
  (an empty network cache);
- whole-process seconds and the ratio to synchronous; where a Dask run's time goes (from
  the engine's AGGLO_EXECUTOR_STATS file, Dask's own accounting): launch to the cluster
  ready, launch to the tasks submitted, the sweep, the most bytes the scheduler sent one
  worker (all that comes from the driver) and the most one worker fetched from the others,
  the tasks' compute seconds; then what those components predict at 16 and 64 cores.

    python benchmarks/bench_executors.py                  # shapes from this machine's cores
    python benchmarks/bench_executors.py --sweeps capsweep --shapes 8x2,16x1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scale import CAPSWEEP  # noqa: E402

SWEEPS = {
    "capsweep": (CAPSWEEP, 512),
    "sweep4096": ([*CAPSWEEP, "freight.beta=range(0.5,1.5,0.125)"], 4096),
    # a smoke test of this script (tests/test_benchmarks.py)
    "synthetic": (["experiment=synthetic", "data.n=300", "commute.cap_min=30,60", "freight.beta=0.5,1.0",
                   "executor.batch_size=2", "cores.min_population=5000"], 4),
}  # fmt: skip
SENT_TARGET = 16 * 2**20  # at most this many bytes from the driver to any worker


def launch(overrides: list[str], store: Path, env: dict) -> tuple[float, dict]:
    """One `agglo run` process: (wall seconds, the executor's stats or {})."""
    stats = store.with_suffix(".json")
    env = os.environ | env | {"AGGLO_EXECUTOR_STATS": str(stats)}
    cmd = [sys.executable, "-m", "agglo.cli", "run", *overrides, f"store.path={store}", "--quiet"]
    launched = time.time()
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"agglo run {' '.join(overrides)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    shutil.rmtree(store, ignore_errors=True)
    got = json.loads(stats.read_text()) if stats.exists() else {}
    stats.unlink(missing_ok=True)
    for key in ("cluster_ready_at", "submitted_at", "done_at"):
        if got.get(key):
            got[key.replace("_at", "_s")] = got[key] - launched
    return wall, got


def start_address(tmp: Path, workers: int, threads: int) -> tuple[str, list]:
    file = tmp / "scheduler.json"
    cli = [sys.executable, "-m"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [subprocess.Popen([*cli, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], **quiet)]  # fmt: skip
    while not file.exists():
        time.sleep(0.1)
    procs.append(
        subprocess.Popen(
            [*cli, "distributed.cli.dask_worker", "--scheduler-file", str(file), "--nworkers", str(workers), "--nthreads", str(threads),
             "--no-dashboard", "--host", "127.0.0.1"],
            **quiet,
        )
    )  # fmt: skip
    address = json.loads(file.read_text())["address"]
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def stop(procs: list) -> None:
    for p in reversed(procs):
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def default_shapes(cores: int) -> list[tuple[int, int]]:
    shapes = [(cores, 1), (max(1, cores // 2), 2), (max(1, cores // 4), 4), (1, cores)]
    return list(dict.fromkeys(s for s in shapes if s[0] * s[1] <= cores))


def row(name: str, wall: float, sync: float, stats: dict) -> str:
    mib = 2**20
    text = f"{name:30} {wall:7.1f} {wall / sync:6.2f}"
    if not stats:
        return text
    sent = max(stats.get("from_scheduler", {0: 0}).values() or [0])
    fetched = max(stats.get("from_workers", {0: 0}).values() or [0])
    compute = sum(d.get("compute", 0.0) for d in stats.get("durations", {}).values())
    ready = stats.get("cluster_ready_s")
    text += (
        f" {'-' if ready is None else f'{ready:.1f}':>7} {stats.get('submitted_s', 0):>9.1f} "
        f"{stats.get('done_s', 0) - stats.get('submitted_s', 0):>7.1f} {sent / mib:>8.2f} {fetched / mib:>9.1f} "
        f"{compute:>9.1f} {stats.get('pieces', 0):>6}"
    )
    return text


def predict(stats: dict, cores: int) -> str:
    """Whole-process seconds at ``cores``: the driver's set-up before the tasks, then the
    tasks' compute seconds spread over the cores, then the summary (a simple model from
    this run's components: start-up does not shrink with cores, compute does)."""
    compute = sum(d.get("compute", 0.0) for d in stats.get("durations", {}).values())
    setup = stats.get("submitted_s", 0.0)
    return f"{setup + compute / cores:.1f} s at {cores} cores"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", default="capsweep,sweep4096")
    parser.add_argument("--shapes", default=None, help="local shapes to try, e.g. 16x1,8x2 (default: from the cores)")
    parser.add_argument("--no-address", action="store_true")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    shapes = (
        [tuple(int(x) for x in s.split("x")) for s in args.shapes.split(",")] if args.shapes else default_shapes(cores)
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="agglo-bench-exec-") as tmp:
        tmp = Path(tmp)
        warm_env = {"AGGLO_NETWORK_CACHE_DIR": str(tmp / "networks")}
        address, procs = (None, [])
        best = max(shapes, key=lambda s: (s[0] * s[1], s[1] == 2))
        if not args.no_address:
            address, procs = start_address(tmp, *best)
        try:
            for sweep in args.sweeps.split(","):
                overrides, n = SWEEPS[sweep]
                runs = [("synchronous", ["executor.kind=synchronous"]), ("default (auto)", [])]
                runs += [(f"local {w}x{t}", ["executor.kind=local", f"executor.n_workers={w}",
                                             f"executor.threads_per_worker={t}"]) for w, t in shapes]  # fmt: skip
                if address:
                    runs.append(
                        (f"address {best[0]}x{best[1]}", ["executor.kind=address", f"executor.address={address}"])
                    )
                launch([*overrides, "executor.kind=synchronous"], tmp / "w.zarr", warm_env)  # fill the caches
                print(f"\n{sweep}: {n} scenarios, {cores} cores")
                print(
                    f"{'executor':30} {'wall s':>7} {'x sync':>6} {'ready s':>7} {'submit s':>9} {'sweep s':>7} "
                    f"{'sent MiB':>8} {'fetch MiB':>9} {'compute s':>9} {'pieces':>6}"
                )
                sync = None
                states = ("cold", "warm") if sweep == "capsweep" else ("warm",)
                for state in states:
                    for name, extra in runs:
                        env = (
                            warm_env
                            if state == "warm"
                            else {"AGGLO_NETWORK_CACHE_DIR": str(tmp / f"cold-{time.time()}")}
                        )
                        wall, stats = launch([*overrides, *extra], tmp / "s.zarr", env)
                        if name == "synchronous":
                            sync = wall
                        print(row(f"{name} {state}", wall, sync, stats), flush=True)
                        sent = max(stats.get("from_scheduler", {0: 0}).values() or [0])
                        if stats and sent > SENT_TARGET:
                            ok = False
                        if name == "default (auto)" and wall > 1.1 * sync:
                            ok = False
                        if stats and name.startswith("local") and state == "warm":
                            last = stats
                if sweep == "capsweep" and "last" in locals():
                    print("model, from the last local run: " + "; ".join(predict(last, c) for c in (16, 64)))
        finally:
            stop(procs)
    print(
        "\nwall = the whole process; ready = launch to the local cluster up; submit = launch to the graph submitted; "
        "sweep = submitted to the last batch written; sent = the most bytes the scheduler sent one worker; "
        "fetch = the most one worker fetched from the others; targets: default <= 1.1 x sync, sent <= 16 MiB"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
