"""National and world runs end to end, as a user starts them, against issue #4's budgets.

Each case is one ``agglo run`` in a fresh process (interpreter start, loading GeoNames,
the neighbourhood, the kernels, the Zarr cube and the summary included); the wall time
is measured around the process, the peak memory is the process's own maximum RSS
(the Dask workers of the sweep are separate processes and report theirs to Dask).

    python benchmarks/bench_scale.py                       # every case below (~10 min)
    python benchmarks/bench_scale.py --cases national,world
    python benchmarks/bench_scale.py --cases first-batch,capsweep,capsweep-local

Cases:
  national  every GeoNames town of Mexico, one scenario, in-process (budget: 2 GiB)
  world     every GeoNames place of the world with 500+ people, one scenario (60 s, 8 GiB)
  sweep     10 000 scenarios over all of Mexico, both modes, to Zarr, default local
            cluster (10 minutes)
  capsweep  the 512-scenario cap sweep of issue #12 over all of Mexico (commute caps 30-100,
            freight caps 120-330, commute beta 1.0-2.75), synchronous executor, run twice:
            cold (an empty network cache: the run builds its network and writes the entry)
            and warm (the same run again). Printed in ms a scenario beside one scenario of
            the dense NumPy twin (tests/naive.py, timed in the same run) and beside the
            ideal: the kernels' time per reached pair (a fixed-cap batch of 64, same run) x
            the pairs the sweep's scenarios reach; and beside the ideal of its distinct mode
            scenarios alone (a run computes each once and copies the repeats)
  capsweep-local  the same on the default local Dask cluster
  first-batch  `agglo run experiment=mexico executor.kind=synchronous`: seconds from the
            process's launch to its first batch's kernels (median of 3; target < 4 s)
  executors  the cap sweep and a 4 096-scenario sweep under every executor: synchronous, the
            default, the local cluster in each shape, an address cluster this bench starts on
            127.0.0.1 (benchmarks/bench_executors.py, which also runs alone)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SWEEP = [
    "commute.cap_min=30,40,50,60,70,80,90,100,110,120",
    "freight.cap_min=120,140,160,180,200,220,240,260,280,300",
    "commute.beta=range(1.5,2.5,0.1)",
    "freight.beta=range(0.5,1.5,0.1)",
]

CAPSWEEP = [
    "data.source=geonames",
    "data.country=MX",
    "data.admin1=null",
    "cores.ids=[]",
    "commute.beta=range(1.0,3.0,0.25)",
    "commute.cap_min=30,40,50,60,70,80,90,100",
    "freight.cap_min=120,150,180,210,240,270,300,330",
]

CASES = {
    # name: (overrides, budget seconds or None, budget GiB or None, scenarios)
    "national": (["experiment=mexico", "executor.kind=synchronous"], None, 2.0, 1),
    "world": (["experiment=world"], 60.0, 8.0, 1),
    "sweep": (["experiment=mexico", *SWEEP], 600.0, None, 10_000),
    "capsweep": ([*CAPSWEEP, "executor.kind=synchronous"], None, None, 512),
    "capsweep-local": (CAPSWEEP, None, None, 512),
    "synthetic": (["experiment=synthetic", "executor.kind=synchronous"], 60.0, 8.0, 1),  # smoke test
}
FIRST_BATCH = {
    # name: (overrides, target seconds from launch to the first batch)
    "first-batch": (["experiment=mexico", "executor.kind=synchronous"], 4.0),
    "first-batch-synthetic": (["experiment=synthetic", "executor.kind=synchronous"], 4.0),  # smoke test
}

_CHILD = """
import json, os, resource, sys, time
launched = float(os.environ["AGGLO_BENCH_LAUNCH"])
import agglo.engine.executors.task as task
first = {}
compute = task.compute_batch
def timed(*args, **kwargs):
    first.setdefault("first_batch_s", time.time() - launched)
    return compute(*args, **kwargs)
task.compute_batch = timed
from agglo.cli import main
rc = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("BENCH " + json.dumps({"rc": rc, "maxrss_kib": usage, **first}))
"""


def _launch(overrides: list[str], store: Path) -> tuple[float, dict]:
    """One ``agglo run`` in a fresh interpreter: (wall seconds, what the child reported)."""
    cmd = [sys.executable, "-c", _CHILD, "run", *overrides, f"store.path={store}", "--quiet"]
    env = os.environ | {"AGGLO_BENCH_LAUNCH": repr(time.time())}
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
    if done.returncode != 0 or not line:
        raise SystemExit(f"agglo run {' '.join(overrides)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    shutil.rmtree(store, ignore_errors=True)
    return wall, json.loads(line[-1][6:])


def run_case(name: str, workdir: Path) -> dict:
    overrides, budget_s, budget_gib, scenarios = CASES[name]
    wall, info = _launch(overrides, workdir / f"{name}.zarr")
    return {
        "case": name,
        "scenarios": scenarios,
        "wall_s": wall,
        "peak_gib": info["maxrss_kib"] / 2**20,
        "budget_s": budget_s,
        "budget_gib": budget_gib,
    }


def first_batch(name: str, workdir: Path, repeat: int = 3) -> dict:
    """Seconds from launch to the first batch (Numba and GeoNames caches warmed by a first run)."""
    overrides, target = FIRST_BATCH[name]
    _launch(overrides, workdir / "warm.zarr")
    times = sorted(_launch(overrides, workdir / f"{name}.zarr")[1]["first_batch_s"] for _ in range(repeat))
    return {"case": name, "median_s": times[len(times) // 2], "min_s": times[0], "max_s": times[-1], "target_s": target}


def kernel_baseline(case: str = "mexico") -> dict:
    """The kernel benchmark's fixed-cap batch and dense twin for ``case``, in its own process."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_kernels.py"), "--worker", case, "--repeat", "3"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench_kernels {case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sweep_reached_pairs(overrides: list[str]) -> tuple[int, int]:
    """The pairs the sweep's scenarios reach, summed over scenarios and modes; and the same
    over each mode's distinct scenarios only (agglo.engine.compute.batch.mode_keys: what a run
    computes, the rest being copies)."""
    from agglo.engine.compute.keys import first_of, mode_keys
    from agglo.engine.config.compose import resolve
    from agglo.engine.config.names import MODES
    from agglo.engine.data.load import load_towns
    from agglo.engine.network.build import forced_cores, prepare
    from agglo.engine.planning.plan import make_plan
    from agglo.engine.planning.scenarios import batch_parameters, core_mask, reach_radii
    from benchmarks.bench_kernels import mode_reached_pairs

    cfg, omega = resolve(overrides)
    towns = load_towns(cfg)
    plan = make_plan(omega, cfg.executor.batch_size)
    params = batch_parameters(cfg, plan.scenario_values(None), plan.n_scenarios)
    forced = forced_cores(towns, list(cfg.cores.ids))
    network = prepare(towns, forced, reach_radii(params), cfg.cores.min_population)
    is_core = core_mask(network.population, forced, params.core_min_population)
    every = distinct = 0
    for name in MODES:
        pairs = mode_reached_pairs(network, params, name)
        twin = first_of(mode_keys(params.mode(name), params.closed, is_core))
        every += int(pairs.sum())
        distinct += int(pairs[twin == np.arange(twin.shape[0])].sum())
    return every, distinct


def capsweep_report(results: list[dict]) -> bool:
    """The cap-sweep cases against the dense twin and the ideal, issue #12's targets."""
    base = kernel_baseline("mexico")
    reached, distinct = sweep_reached_pairs([*CAPSWEEP, "executor.kind=synchronous"])
    ideal_ms = base["ns_per_pair"] * 1e-6 * reached / 512
    distinct_ms = base["ns_per_pair"] * 1e-6 * distinct / 512
    print(
        f"\ncap sweep, all of Mexico, 512 scenarios: dense NumPy twin {base['ref_ms']:.0f} ms a scenario "
        f"({base['ref_how']}); kernels {base['ns_per_pair']:.3f} ns a reached pair (fixed-cap batch of 64, "
        f"{base['batch_ms']:.2f} ms a scenario); the sweep reaches {reached / 512 / 1e6:.1f} M pairs a scenario, "
        f"ideal {ideal_ms:.2f} ms a scenario; its distinct mode scenarios (each computed once, the rest copied) "
        f"reach {distinct / 512 / 1e6:.2f} M pairs a scenario, ideal {distinct_ms:.2f} ms"
    )
    print(
        f"{'case':20} {'wall s':>8} {'ms/scen':>8} {'x dense':>8} {'/ideal':>7} {'/distinct':>9}"
        "  targets: x dense >= 1000, /ideal <= 1.5"
    )
    ok = True
    for r in results:
        ms = 1e3 * r["wall_s"] / r["scenarios"]
        x_dense, over = base["ref_ms"] / ms, ms / ideal_ms
        met = x_dense >= 1000 and over <= 1.5
        ok &= met
        print(
            f"{r['case']:20} {r['wall_s']:>8.1f} {ms:>8.2f} {x_dense:>8.0f} {over:>7.2f} {ms / distinct_ms:>9.2f}  "
            f"{'met' if met else 'NOT met'}"
        )
    print(
        "cold = an empty network cache (the run builds its network and writes it), warm = the same run again; "
        "/distinct = against the ideal of the distinct mode scenarios alone"
    )
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="national,world,sweep,first-batch,capsweep,capsweep-local")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.cases.split(",")]
    if "executors" in names:
        from benchmarks import bench_executors

        names.remove("executors")
        if bench_executors.main([]) != 0:
            return 1
        if not names:
            return 0
    unknown = [n for n in names if n not in CASES and n not in FIRST_BATCH]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; allowed: {', '.join([*CASES, *FIRST_BATCH])}")
    ok = True
    with tempfile.TemporaryDirectory(prefix="agglo-bench-") as tmp:
        os.environ["AGGLO_NETWORK_CACHE_DIR"] = str(Path(tmp) / "networks")  # the bench's own network cache
        budgeted = [n for n in names if n in CASES and not n.startswith("capsweep")]
        if budgeted:
            print(
                f"{'case':9} {'scenarios':>9} {'wall s':>8} {'budget s':>9} {'of budget':>9} {'peak GiB':>9} {'budget GiB':>10} {'of budget':>9}"
            )
        for name in budgeted:
            r = run_case(name, Path(tmp))
            share_s = r["wall_s"] / r["budget_s"] if r["budget_s"] else None
            share_m = r["peak_gib"] / r["budget_gib"] if r["budget_gib"] else None
            ok &= (share_s or 0) <= 1 and (share_m or 0) <= 1
            print(
                f"{r['case']:9} {r['scenarios']:>9} {r['wall_s']:>8.1f} {r['budget_s'] or '-':>9} "
                f"{'-' if share_s is None else f'{share_s:.2f}':>9} {r['peak_gib']:>9.2f} {r['budget_gib'] or '-':>10} "
                f"{'-' if share_m is None else f'{share_m:.2f}':>9}",
                flush=True,
            )
        if budgeted:
            print(
                "wall = the whole `agglo run` process; peak = its maximum RSS; 'of budget' = measured / issue #4's budget"
            )
        for name in [n for n in names if n in FIRST_BATCH]:
            r = first_batch(name, Path(tmp))
            met = r["median_s"] < r["target_s"]
            ok &= met
            print(
                f"{name}: launch to first batch {r['median_s']:.2f} s (median of 3; {r['min_s']:.2f}-{r['max_s']:.2f}), "
                f"target < {r['target_s']:g} s: {'met' if met else 'NOT met'}",
                flush=True,
            )
        sweeps = []
        for name in [n for n in names if n.startswith("capsweep")]:
            os.environ["AGGLO_NETWORK_CACHE_DIR"] = str(Path(tmp) / f"networks-{name}")  # this case's own, empty
            for state in ("cold", "warm"):
                sweeps.append(dict(run_case(name, Path(tmp)), case=f"{name} {state}"))
        if sweeps:
            ok &= capsweep_report(sweeps)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
