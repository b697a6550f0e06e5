"""The CUDA front against the CPU kernels, in one run (needs an NVIDIA GPU; prints what it
cannot measure otherwise).

    python benchmarks/bench_gpu.py [--scenarios 64] [--no-process]

1. Kernels: all of Mexico (GeoNames), a batch of mixed caps and betas (``--scenarios``),
   both modes: ``compute_batch`` on every CPU core against the GPU passes, the GPU's time
   split into transfers to the device, kernels and transfers back (each pass's first call,
   which compiles, is left out); per scenario and as a ratio.
2. The whole ``agglo run`` process of the 4 096-scenario Mexico sweep
   (bench_executors' sweep4096) on each device, synchronous executor, with where the time
   goes: start-up to the first batch, compute, the cube's writes.

Contract figures come with it: towns whose core differs between the devices, and how many
of them the GPU run marked near a tie or the threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_scale import CAPSWEEP  # noqa: E402

SWEEP4096 = [*CAPSWEEP, "freight.beta=range(0.5,1.5,0.125)", "executor.kind=synchronous"]

_CHILD = """
import json, sys, time
import agglo.engine.executors.task as task
import agglo.engine.store.cube as store
spent = {"compute_s": 0.0, "write_s": 0.0}
compute, write = task.compute_batch, task.write_batch
def timed_compute(*a, **k):
    t = time.perf_counter(); out = compute(*a, **k); spent["compute_s"] += time.perf_counter() - t; return out
def timed_write(*a, **k):
    t = time.perf_counter(); write(*a, **k); spent["write_s"] += time.perf_counter() - t
task.compute_batch, task.write_batch = timed_compute, timed_write
from agglo.cli import main
rc = main(sys.argv[1:])
print("BENCH " + json.dumps({"rc": rc, **spent}))
"""


def kernels(n_scen: int) -> None:
    from agglo.engine.compute.batch import NEAR_TIES, compute_batch
    from agglo.engine.config.compose import resolve
    from agglo.engine.data.load import load_towns
    from agglo.engine.network.build import forced_cores, prepare
    from agglo.engine.planning.scenarios import batch_parameters, core_mask, reach_radii
    from agglo.kernels.cuda import gravity_passes

    cfg, _ = resolve(CAPSWEEP[:4])
    towns = load_towns(cfg)
    rng = np.random.default_rng(0)
    values = {
        "commute.cap_min": rng.choice([30, 45, 60, 75, 90, 100], n_scen).astype(float),
        "freight.cap_min": rng.choice([120, 180, 240, 300, 330], n_scen).astype(float),
        "commute.beta": rng.uniform(1.0, 3.0, n_scen),
        "freight.beta": rng.uniform(0.5, 1.5, n_scen),
    }
    params = batch_parameters(cfg, values, n_scen)
    network = prepare(towns, forced_cores(towns, []), reach_radii(params), float(cfg.cores.min_population))
    pairs = sum(network.rows[m].neighbour.shape[0] for m in ("commute", "freight"))
    print(f"Mexico: {len(towns)} towns, {n_scen} scenarios of mixed caps and betas, {pairs / 1e6:.1f} M row pairs")
    compute_batch(network, params.take(np.arange(2)), share_repeats=False)  # compile
    t = time.perf_counter()
    cpu = compute_batch(network, params, share_repeats=False)
    cpu_s = time.perf_counter() - t
    import numba

    print(f"  CPU, {numba.get_num_threads()} threads: {cpu_s:.3f} s, {1e3 * cpu_s / n_scen:.2f} ms a scenario")
    from numba import cuda

    if not cuda.is_available():
        print("  CUDA: no GPU here (numba.cuda finds none): nothing more to measure")
        return
    is_core = core_mask(network.population, network.forced_core, params.core_min_population)
    small = params.take(np.arange(2))
    for name in ("commute", "freight"):  # compile
        gravity_passes(network.rows[name], network.places, small.mode(name), small.closed, is_core[:2])
    timings: dict = {}
    t = time.perf_counter()
    for name in ("commute", "freight"):
        gravity_passes(network.rows[name], network.places, params.mode(name), params.closed, is_core, timings=timings)
    gpu_s = time.perf_counter() - t
    k = timings["kernels_s"]
    name = cuda.get_current_device().name
    print(
        f"  CUDA ({name.decode() if isinstance(name, bytes) else name}): {gpu_s:.3f} s in all: to device "
        f"{timings['to_device_s']:.3f} s, kernels {k:.3f} s, to host {timings['to_host_s']:.3f} s; "
        f"kernels {1e3 * k / n_scen:.3f} ms a scenario"
    )
    print(f"  ratio: kernels {cpu_s / k:.1f}x the CPU, with transfers {cpu_s / gpu_s:.1f}x")
    before = list(NEAR_TIES)
    gpu = compute_batch(network, params, share_repeats=False, device="cuda")
    differ = int((gpu["core"] != cpu["core"]).sum())
    print(
        f"  contract: {differ} of {gpu['core'].size} assignments differ from the CPU's; "
        f"{NEAR_TIES[0] - before[0]} marked near a tie or the threshold"
    )


def process(device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", _CHILD, "run", *SWEEP4096, f"executor.device={device}"]
        cmd += [f"store.path={tmp}/cube.zarr", "--quiet"]
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, NUMBA_ENABLE_CUDASIM="0"))
        wall = time.perf_counter() - t
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
    if done.returncode != 0 or not line:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return {"wall_s": wall, **json.loads(line[0][6:])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", type=int, default=64)
    parser.add_argument("--no-process", action="store_true", help="the kernels only")
    args = parser.parse_args(argv)
    kernels(args.scenarios)
    if args.no_process:
        return 0
    print("whole `agglo run` process, 4 096-scenario Mexico sweep, synchronous executor:")
    base = None
    for device in ("cpu", "cuda"):
        got = process(device)
        if "error" in got:
            print(f"  {device}: {got['error']}")
            continue
        base = base or got["wall_s"]
        other = got["wall_s"] - got["compute_s"] - got["write_s"]
        print(
            f"  {device}: {got['wall_s']:.1f} s ({base / got['wall_s']:.2f}x faster than cpu): compute "
            f"{got['compute_s']:.1f} s, writes {got['write_s']:.1f} s, the rest (start-up, network, summary) {other:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
