"""Building from a travel-time table against the built-in neighbourhood, all of Mexico.

    python benchmarks/bench_traveltimes.py              # about 3 minutes on 2 cores, ~6 GB of disk and memory
    python benchmarks/bench_traveltimes.py --quick      # Oaxaca only (a smoke test)

First the table: the built-in freight times of every GeoNames town of Mexico (500+ people)
within 330 minutes (``agglo times``' own function), written as Parquet, and an asymmetric
copy (every pair with origin < destination 10 % slower). Then, each in a fresh process (its
maximum RSS is its own):

  build-km          the built-in network at commute 60 min / freight 330 min (the baseline)
  build-table       the same with freight on the table (stream, check, rows, incoming rows)
  build-asymmetric  the same on the asymmetric table (outgoing and incoming rows kept)
  run-km, run-table the whole ``agglo run`` of the 512-scenario cap sweep (commute caps 30-100,
                    freight caps 120-330, commute beta), synchronous, network cache off, so
                    that each run builds its network

Printed: seconds, peak RSS, pairs, and each as a ratio to its km baseline of the same run.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_BUILD = """
import json, resource, sys, time
from agglo.engine.network.build import prepare, forced_cores
from agglo.engine.data.towns import load_geonames
from agglo.engine.data.traveltimes import time_table
admin1, table = json.loads(sys.argv[1]), sys.argv[2]
towns = load_geonames("MX", admin1, 500)
forced = forced_cores(towns, [])
km = lambda cap, speed: cap * speed / (60 * 1.3) * (1 + 1e-9) + 1e-9
radii = {"commute": km(60, 60), "freight": km(330, 50)}
t = time.perf_counter()
if table:
    radii["freight"] = time_table("freight.travel_times", table, 330 * (1 + 1e-9) + 1e-9)
hashed = time.perf_counter() - t
network = prepare(towns, forced, radii, core_floor=100000.0)
seconds = time.perf_counter() - t
pairs = int(network.rows["freight"].neighbour.shape[0]) + (0 if network.symmetric("freight") else int(network.cols["freight"].neighbour.shape[0]))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print("BENCH " + json.dumps({"seconds": seconds, "hash_s": hashed, "peak_gib": rss, "pairs": pairs, "symmetric": network.symmetric("freight")}))
"""

SWEEP = [
    "data.source=geonames",
    "data.country=MX",
    "data.min_population=500",
    "data.parts=off",  # every place GeoNames lists, as the table and the builds above take them
    "cores.ids=[]",
    "commute.beta=range(1.0,3.0,0.25)",
    "commute.cap_min=30,40,50,60,70,80,90,100",
    "freight.cap_min=120,150,180,210,240,270,300,330",
    "executor.kind=synchronous",
    "executor.network_cache_gib=0",
    "--quiet",
]


def child(code_args: list[str]) -> tuple[float, dict]:
    t = time.perf_counter()
    done = subprocess.run([sys.executable, *code_args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    lines = [x for x in done.stdout.splitlines() if x.startswith("BENCH ")]
    if done.returncode != 0 or (code_args[0] == "-c" and not lines):
        raise SystemExit(f"failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, json.loads(lines[-1][6:]) if lines else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="Oaxaca only (a smoke test)")
    args = parser.parse_args(argv)
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from agglo.engine.data.times import engine_pairs, write_table
    from agglo.engine.data.towns import load_geonames

    admin1 = ["20"] if args.quick else None
    region = "Oaxaca" if args.quick else "all of Mexico"
    towns = load_geonames("MX", admin1, 500)
    work = Path(tempfile.mkdtemp(prefix="agglo-bench-times-"))
    t = time.perf_counter()
    origin, dest, minutes = engine_pairs(towns, 1.3, 50.0, 330.0)
    pairs_s = time.perf_counter() - t
    table = work / "freight.parquet"
    t = time.perf_counter()
    write_table(str(table), towns, origin, dest, minutes)
    write_s = time.perf_counter() - t
    slower = np.where(origin < dest, 1.1, 1.0) * minutes
    asym = work / "asymmetric.parquet"
    ids = np.asarray(towns.town_id)
    pq.write_table(pa.table({"origin": ids[origin], "destination": ids[dest], "minutes": slower}), asym)
    del origin, dest, minutes, slower
    size = table.stat().st_size / 2**20
    print(
        f"{region}: {len(towns)} towns; the 330-min freight table: {os.path.getsize(table):,} bytes "
        f"({size:.0f} MiB Parquet), pairs computed in {pairs_s:.1f} s, written in {write_s:.1f} s"
    )
    results = {}
    for name, path in (("build-km", ""), ("build-table", str(table)), ("build-asymmetric", str(asym))):
        # twice, the faster kept: the first process may compile (Numba's cache) and fault pages in
        runs = [child(["-c", _BUILD, json.dumps(admin1), path])[1] for _ in range(2)]
        results[name] = min(runs, key=lambda got: got["seconds"])
    base = results["build-km"]
    print("| step | seconds | vs km | peak RSS GiB | vs km | freight pairs held |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, got in results.items():
        print(
            f"| {name} | {got['seconds']:.2f} (SHA-256 {got['hash_s']:.2f}) | {got['seconds'] / base['seconds']:.2f}x | "
            f"{got['peak_gib']:.2f} | {got['peak_gib'] / base['peak_gib']:.2f}x | {got['pairs']:,} |"
        )
    sweep = [s for s in SWEEP if not (args.quick and s.startswith("data.min"))]
    if args.quick:
        sweep = [*sweep, "data.admin1=[20]"]
    else:
        sweep = [*sweep, "data.admin1=null"]
    runs = {}
    for name, extra in (("run-km", []), ("run-table", [f"freight.travel_times={table}"])):
        store = work / f"{name}.zarr"
        wall = []
        for _ in range(2):  # the faster of two
            wall.append(child(["-m", "agglo.cli", "run", *sweep, *extra, f"store.path={store}"])[0])
            shutil.rmtree(store, ignore_errors=True)
        runs[name] = min(wall)
    cached = work / "cached.zarr"
    table_run = [*[s for s in sweep if "network_cache" not in s], f"freight.travel_times={table}"]
    child(["-m", "agglo.cli", "run", *table_run, f"store.path={cached}"])  # writes the cache entry
    shutil.rmtree(cached, ignore_errors=True)
    runs["run-table-cached"] = child(["-m", "agglo.cli", "run", *table_run, f"store.path={cached}"])[0]
    print(
        f"whole agglo run, 512-scenario cap sweep, synchronous, network built in the run: "
        f"km {runs['run-km']:.1f} s, table {runs['run-table']:.1f} s ({runs['run-table'] / runs['run-km']:.2f}x); "
        f"table again with the network cache: {runs['run-table-cached']:.1f} s ({runs['run-table-cached'] / runs['run-km']:.2f}x)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
