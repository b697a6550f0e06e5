"""Sweep throughput: scenarios per second for the synchronous executor and the default
local Dask cluster, in the same run, on the same grid, each writing its own Zarr cube.

    python benchmarks/bench_sweep.py                          # Oaxaca, 400-scenario grid
    python benchmarks/bench_sweep.py --grid 'commute.cap_min=range(10,130,3)' 'commute.beta=range(1.0,3.5,0.05)'
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agglo.engine.config.compose import resolve  # noqa: E402
from agglo.engine.run import execute  # noqa: E402

DEFAULT_GRID = ["commute.cap_min=range(10,130,6)", "freight.cap_min=range(60,420,18)"]


def timed(overrides: list[str]) -> tuple[float, int]:
    cfg, _ = resolve(overrides)
    t = time.perf_counter()
    outcome = execute(cfg, quiet=True)
    return time.perf_counter() - t, outcome.plan.n_scenarios


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="oaxaca")
    parser.add_argument("--grid", nargs="*", default=DEFAULT_GRID, help="Hydra sweep overrides")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--kinds", default="synchronous,local")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="agglo-bench-"))
    try:
        base = [f"experiment={args.experiment}", *args.grid, f"executor.batch_size={args.batch_size}"]
        # Warm-up: compile or load the kernels' cache once, outside the timings.
        timed(
            [
                f"experiment={args.experiment}",
                "sweep.grid={}",
                "executor.kind=synchronous",
                f"store.path={work / 'warm.zarr'}",
            ]
        )
        print(f"sweep benchmark: experiment={args.experiment}, grid {' '.join(args.grid)}, batch {args.batch_size}")
        rates = {}
        for kind in args.kinds.split(","):
            seconds, n = timed([*base, f"executor.kind={kind}", f"store.path={work / (kind + '.zarr')}"])
            rates[kind] = n / seconds
            print(
                f"{kind:12} {n:6d} scenarios in {seconds:7.2f} s  = {rates[kind]:8.1f} scenarios/s (cube written, cluster start included)"
            )
        if "synchronous" in rates:
            for kind, rate in rates.items():
                if kind != "synchronous":
                    print(f"{kind} / synchronous = {rate / rates['synchronous']:.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
