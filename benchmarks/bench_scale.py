"""National and world runs end to end, as a user starts them, against issue #4's budgets.

Each case is one ``agglo run`` in a fresh process (interpreter start, loading GeoNames,
the neighbourhood, the kernels, the Zarr cube and the summary included); the wall time
is measured around the process, the peak memory is the process's own maximum RSS
(the Dask workers of the sweep are separate processes and report theirs to Dask).

    python benchmarks/bench_scale.py                       # national, world, sweep (~7 min)
    python benchmarks/bench_scale.py --cases national,world

Cases:
  national  every GeoNames town of Mexico, one scenario, in-process (budget: 2 GiB)
  world     every GeoNames place of the world with 500+ people, one scenario (60 s, 8 GiB)
  sweep     10 000 scenarios over all of Mexico, both modes, to Zarr, default local
            cluster (10 minutes)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SWEEP = [
    "commute.cap_min=30,40,50,60,70,80,90,100,110,120",
    "freight.cap_min=120,140,160,180,200,220,240,260,280,300",
    "commute.beta=range(1.5,2.5,0.1)",
    "freight.beta=range(0.5,1.5,0.1)",
]

CASES = {
    # name: (overrides, budget seconds or None, budget GiB or None, scenarios)
    "national": (["experiment=mexico", "executor.kind=synchronous"], None, 2.0, 1),
    "world": (["experiment=world"], 60.0, 8.0, 1),
    "sweep": (["experiment=mexico", *SWEEP], 600.0, None, 10_000),
    "synthetic": (["experiment=synthetic", "executor.kind=synchronous"], 60.0, 8.0, 1),  # smoke test
}

_CHILD = """
import json, resource, sys
from agglo.tools.cli import main
rc = main(sys.argv[1:])
print("BENCH " + json.dumps({"rc": rc, "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_case(name: str, workdir: Path) -> dict:
    overrides, budget_s, budget_gib, scenarios = CASES[name]
    store = workdir / f"{name}.zarr"
    cmd = [sys.executable, "-c", _CHILD, "run", *overrides, f"store.path={store}", "--quiet"]
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
    if done.returncode != 0 or not line:
        raise SystemExit(f"{name}: agglo run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    info = json.loads(line[-1][6:])
    shutil.rmtree(store, ignore_errors=True)
    return {
        "case": name,
        "scenarios": scenarios,
        "wall_s": wall,
        "peak_gib": info["maxrss_kib"] / 2**20,
        "budget_s": budget_s,
        "budget_gib": budget_gib,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="national,world,sweep")
    args = parser.parse_args(argv)
    print(
        f"{'case':9} {'scenarios':>9} {'wall s':>8} {'budget s':>9} {'of budget':>9} {'peak GiB':>9} {'budget GiB':>10} {'of budget':>9}"
    )
    ok = True
    with tempfile.TemporaryDirectory(prefix="agglo-bench-") as tmp:
        for name in args.cases.split(","):
            r = run_case(name.strip(), Path(tmp))
            share_s = r["wall_s"] / r["budget_s"] if r["budget_s"] else None
            share_m = r["peak_gib"] / r["budget_gib"] if r["budget_gib"] else None
            ok &= (share_s or 0) <= 1 and (share_m or 0) <= 1
            print(
                f"{r['case']:9} {r['scenarios']:>9} {r['wall_s']:>8.1f} {r['budget_s'] or '-':>9} "
                f"{'-' if share_s is None else f'{share_s:.2f}':>9} {r['peak_gib']:>9.2f} {r['budget_gib'] or '-':>10} "
                f"{'-' if share_m is None else f'{share_m:.2f}':>9}",
                flush=True,
            )
    print("wall = the whole `agglo run` process; peak = its maximum RSS; 'of budget' = measured / issue #4's budget")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
