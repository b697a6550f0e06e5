"""Kernel speed against the dense NumPy reference, measured in the same run.

Prints, per case (default caps, both modes): the neighbourhood build, the first call (JIT
compile or cache load, reported apart), the kernels' time per scenario alone and in a batch,
a batch of mixed caps beside its ideal (the fixed-cap batch's time per reached pair times the
pairs each of its scenarios reaches),
the dense NumPy twin's time per scenario (tests/naive.py, the tests' own twin; on large cases timed on a
sample of origin rows and scaled, as it says), the speed-up, pairs per second per core and
the peak memory of the kernels' process before the reference runs. Each case runs in a
fresh process. Then issue #4's targets for all of Mexico, met or not.

    python benchmarks/bench_kernels.py                     # oaxaca, mexico, us
    python benchmarks/bench_kernels.py --cases oaxaca --batch 16 --repeat 2
    python benchmarks/bench_kernels.py --cases world       # 196 000 places, 206 M pairs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agglo.engine.compute.batch import compute_batch  # noqa: E402
from agglo.engine.config.schema import AggloConfig  # noqa: E402
from agglo.engine.data.towns import load_geonames, synthetic  # noqa: E402
from agglo.engine.network.build import forced_cores, prepare  # noqa: E402
from agglo.engine.planning.scenarios import batch_parameters, reach_radii, reach_radius_km  # noqa: E402
from tests.naive import scenario as dense_twin  # noqa: E402

CASES = {
    "oaxaca": lambda: load_geonames("MX", ["20"], 500),
    "mexico": lambda: load_geonames("MX", None, 500),
    "us": lambda: load_geonames("US", None, 500),
    "world": lambda: load_geonames("world", None, 500),
    "synthetic": lambda: synthetic(300, 0),
}


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def reference_seconds(towns, cfg, max_rows: int) -> tuple[float, str]:
    """Dense NumPy time for one scenario (both modes); sampled rows scaled up when large."""
    n = len(towns)
    is_core = (towns.population >= cfg.cores.min_population) | towns.core
    max_rows = max(50, min(max_rows, 40_000_000 // n))  # keep the dense rows x N arrays to ~300 MB
    rows = n if n <= max_rows else max_rows
    # The reference's cost is rows x N; time `rows` origins against all N destinations.
    t = time.perf_counter()
    for mode in ("commute", "freight"):
        dense_twin(towns.lat, towns.lon, towns.population, None, is_core, vars(cfg.mode(mode)), False, origins=rows)
    seconds = time.perf_counter() - t
    if rows == n:
        return seconds, "measured"
    return seconds * n / rows, f"{rows} of {n} origin rows timed, scaled"


def mode_reached_pairs(network, batch, mode: str) -> np.ndarray:
    """Pairs each scenario of ``batch`` reaches in ``mode``: its reach radius's prefix of
    every row (what the kernels of a batch in reach order iterate over for it)."""
    radius = reach_radius_km(batch.mode(mode))
    dist = np.exp(network.rows[mode].log_dist.astype(np.float64))
    total = np.zeros(batch.n_scenarios, dtype=np.int64)
    for r in np.unique(radius):
        total[radius == r] = np.count_nonzero(dist <= r)
    return total


def reached_pairs(network, batch) -> np.ndarray:
    """Pairs each scenario of ``batch`` reaches, both modes (:func:`mode_reached_pairs`)."""
    return sum(mode_reached_pairs(network, batch, mode) for mode in ("commute", "freight"))


# The mixed-caps batch: the caps of the 512-scenario Mexico cap sweep (bench_scale.py capsweep),
# every scenario a different pair of caps, in no order.
MIXED_COMMUTE = np.array([30, 40, 50, 60, 70, 80, 90, 100], dtype=np.float64)
MIXED_FREIGHT = np.array([120, 150, 180, 210, 240, 270, 300, 330], dtype=np.float64)


def mixed_caps(batch: int) -> dict:
    rng = np.random.default_rng(12)
    grid = np.array([(c, f) for c in MIXED_COMMUTE for f in MIXED_FREIGHT])
    pick = grid[rng.permutation(np.resize(np.arange(grid.shape[0]), batch))]
    return {
        "commute.cap_min": pick[:, 0],
        "freight.cap_min": pick[:, 1],
        "commute.beta": np.linspace(1.0, 2.75, batch),
    }


def run_case(name: str, batch: int, repeat: int, max_rows: int, check: bool, model_batch: int = 0) -> dict:
    towns = CASES[name]()
    cfg = AggloConfig()
    cfg.cores.ids = []
    forced = forced_cores(towns, [])
    one = batch_parameters(cfg, {}, 1)
    t = time.perf_counter()
    network = prepare(towns, forced, reach_radii(one), core_floor=cfg.cores.min_population)
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    out_one = compute_batch(network, one, share_repeats=False)
    t_first = time.perf_counter() - t
    t_one = best_of(lambda: compute_batch(network, one, share_repeats=False), repeat)
    betas = {"commute.beta": np.linspace(1.5, 2.5, batch), "freight.beta": np.linspace(0.5, 1.5, batch)}
    many = batch_parameters(cfg, betas, batch)
    compute_batch(network, many, share_repeats=False)
    t_batch = best_of(lambda: compute_batch(network, many, share_repeats=False), repeat) / batch
    # Kernel time per reached pair (scenario x pair), from the fixed-cap batch.
    reached_one = int(reached_pairs(network, one)[0])
    per_pair = t_batch / reached_one
    kernel_peak = peak_mib()  # the default-caps network; the mixed batch's wider one comes next
    mixed = batch_parameters(cfg, mixed_caps(batch), batch)
    wide = prepare(towns, forced, reach_radii(mixed), core_floor=cfg.cores.min_population)
    compute_batch(wide, mixed, share_repeats=False)
    t_mixed = best_of(lambda: compute_batch(wide, mixed, share_repeats=False), repeat) / batch
    reached_mixed = float(reached_pairs(wide, mixed).mean())

    t_ref, how = reference_seconds(towns, cfg, max_rows)
    if check and len(towns) <= max_rows:
        is_core = towns.population >= cfg.cores.min_population
        for m, mode in enumerate(("commute", "freight")):
            core = dense_twin(towns.lat, towns.lon, towns.population, None, is_core, vars(cfg.mode(mode)), False)[
                "core"
            ]
            assert np.array_equal(core, out_one["core"][0, m]), "kernels disagree with the dense baseline"
    cores = os.cpu_count() or 1
    pairs = network.n_pairs
    return {
        "case": name,
        "towns": len(towns),
        "pairs": pairs,
        "build_s": t_build,
        "first_call_s": t_first,
        "one_ms": 1e3 * t_one,
        "batch_ms": 1e3 * t_batch,
        "reached_pairs": reached_one,
        "ns_per_pair": 1e9 * per_pair,
        "mixed_ms": 1e3 * t_mixed,
        "mixed_ideal_ms": 1e3 * per_pair * reached_mixed,
        "mixed_over_ideal": t_mixed / (per_pair * reached_mixed),
        "ref_ms": 1e3 * t_ref,
        "ref_how": how,
        "speedup_one": t_ref / t_one,
        "speedup_batch": t_ref / t_batch,
        "pairs_per_s_core": 2 * pairs / t_batch / cores,
        "peak_mib": kernel_peak,
        "network_mib": network.nbytes / 2**20,
        "models": model_rows(towns, cfg, network, model_batch, repeat, wide) if model_batch else [],
    }


MODELS = ("gravity", "attraction", "doubly", "radiation")
DENSE_TWIN_MAX_TOWNS = 3000  # the dense twin of the other models holds several N x N arrays


def model_keys(model: str, n: int) -> dict:
    """``model`` for both modes of ``n`` scenarios, as swept values."""
    return {f"{m}.model": np.array([model] * n, dtype=object) for m in ("commute", "freight")}


def tries_of(model: str, repeat: int) -> int:
    return 1 if model == "doubly" else repeat  # the doubly balance costs about half a second a scenario


def model_rows(towns, cfg, network, batch: int, repeat: int, wide=None) -> list[dict]:
    """Each flow model at the default caps, both modes: ms a scenario alone and in a batch of
    ``batch`` (betas varied), its ratio to gravity's batch in this run, and the model's dense
    NumPy twin (tests/naive.py) for one scenario where the case is small enough to hold it.
    With ``wide`` (a network for the mixed caps), gravity, radiation and doubly again on a
    batch of the mixed caps (every scenario its own reach, one beta: doubly's scenarios share f
    and balance in lockstep), each one's ratio to that gravity batch."""
    from tests.naive import scenario_dense

    rows = []
    is_core = (towns.population >= cfg.cores.min_population) | towns.core
    for model in MODELS:

        def swept(n, model=model):
            out = model_keys(model, n)
            if n > 1:
                out |= {"commute.beta": np.linspace(1.5, 2.5, n), "freight.beta": np.linspace(0.5, 1.5, n)}
            return out

        one = batch_parameters(cfg, swept(1), 1)
        many = batch_parameters(cfg, swept(batch), batch)
        tries = tries_of(model, repeat)
        compute_batch(network, one, share_repeats=False)  # compile or load
        t_one = best_of(lambda one=one: compute_batch(network, one, share_repeats=False), tries)
        out = {}
        t_batch = (
            best_of(lambda many=many, out=out: out.update(compute_batch(network, many, share_repeats=False)), tries)
            / batch
        )
        row = {"model": model, "one_ms": 1e3 * t_one, "batch_ms": 1e3 * t_batch, "dense_ms": None}
        row["ipf_error"] = float(np.max(out["ipf_error"])) if model == "doubly" else None
        if len(towns) <= DENSE_TWIN_MAX_TOWNS:
            t = time.perf_counter()
            for mode in ("commute", "freight"):
                params = dict(vars(cfg.mode(mode)), model=model)
                scenario_dense(towns.lat, towns.lon, towns.population, towns.region_code, is_core, params, False)
            row["dense_ms"] = 1e3 * (time.perf_counter() - t)
        rows.append(row)
    gravity = rows[0]["batch_ms"]
    for row in rows:
        row["x_gravity"] = row["batch_ms"] / gravity
    if wide is not None:
        caps = mixed_caps(batch)
        by_model = {}
        for model in ("gravity", "radiation", "doubly"):
            many = batch_parameters(cfg, caps | model_keys(model, batch), batch)
            compute_batch(wide, many, share_repeats=False)
            by_model[model] = (
                1e3
                * best_of(lambda many=many: compute_batch(wide, many, share_repeats=False), tries_of(model, repeat))
                / batch
            )
        for model, ms in by_model.items():
            rows.append(
                {
                    "model": f"{model}/caps",
                    "one_ms": float("nan"),
                    "batch_ms": ms,
                    "dense_ms": None,
                    "ipf_error": None,
                    "x_gravity": ms / by_model["gravity"],
                }
            )
    return rows


TARGETS = [
    # (case, field, comparison, bound, what)
    ("mexico", "one_ms", "<=", 40.0, "Mexico, both modes, one scenario alone: ms"),
    ("mexico", "batch_ms", "<=", 10.0, "Mexico, per scenario in a batch of 64: ms"),
    ("mexico", "speedup_batch", ">=", 1000.0, "Mexico, batched, x dense NumPy"),
    ("mexico", "build_s", "<", 5.0, "Mexico, neighbourhood at the 240-min freight cap: s"),
    ("mexico", "mixed_over_ideal", "<=", 1.5, "Mexico, mixed-caps batch / ideal (#12)"),
]


def _one_case_in_subprocess(name: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--batch", str(args.batch), "--repeat", str(args.repeat)]
    cmd += ["--max-reference-rows", str(args.max_reference_rows)] + (["--check"] if args.check else [])
    cmd += ["--model-batch", str(args.model_batch)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"case {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="oaxaca,mexico,us")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--max-reference-rows",
        type=int,
        default=2000,
        help="time the dense reference on at most this many origin rows (scaled to all)",
    )
    parser.add_argument("--check", action="store_true", help="also compare cores with the reference where it ran whole")
    parser.add_argument(
        "--model-batch",
        type=int,
        default=16,
        help="batch size of the per-model rows (0: skip them; the doubly balance costs seconds a scenario)",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # run one case here, print JSON
    args = parser.parse_args(argv)
    if args.worker:
        r = run_case(args.worker, args.batch, args.repeat, args.max_reference_rows, args.check, args.model_batch)
        print(json.dumps(r))
        return 0
    print(
        f"agglo kernel benchmark: {os.cpu_count()} cores, default caps (commute 60 min, freight 240 min), "
        f"batch {args.batch}; times are best of {args.repeat}; each case in its own process"
    )
    header = f"{'case':10} {'towns':>7} {'pairs':>11} {'build s':>8} {'1st call s':>10} {'alone ms':>9} {'batch ms':>9} {'NumPy ms':>10} {'x alone':>8} {'x batch':>8} {'mixed ms':>9} {'/ideal':>6} {'Mpairs/s/core':>13} {'peak MiB':>9}"
    print(header)
    results = {}
    for name in args.cases.split(","):
        r = _one_case_in_subprocess(name.strip(), args)
        results[r["case"]] = r
        print(
            f"{r['case']:10} {r['towns']:>7} {r['pairs']:>11} {r['build_s']:>8.2f} {r['first_call_s']:>10.2f} "
            f"{r['one_ms']:>9.2f} {r['batch_ms']:>9.2f} {r['ref_ms']:>10.0f} {r['speedup_one']:>8.0f} "
            f"{r['speedup_batch']:>8.0f} {r['mixed_ms']:>9.2f} {r['mixed_ms'] / r['mixed_ideal_ms']:>6.2f} "
            f"{r['pairs_per_s_core'] / 1e6:>13.0f} {r['peak_mib']:>9.0f}"
            + ("" if r["ref_how"] == "measured" else f"   (NumPy: {r['ref_how']})"),
            flush=True,
        )
    print(
        "pairs = neighbour pairs within the largest reach radius (both directions); "
        "'x' = NumPy dense reference time / kernel time; peak = the kernels' process max RSS before the reference;\n"
        f"mixed = a batch of {args.batch} with the caps of the 512-scenario cap sweep (commute 30-100, freight 120-330 min) "
        "in no order; /ideal = mixed / (the fixed-cap batch's time per reached pair x the pairs each mixed scenario reaches)"
    )
    if args.model_batch:
        print(
            f"\nflow models (#13), default caps, both modes; batch = {args.model_batch} scenarios (betas varied); "
            "'x gravity' = batch ms / gravity's batch ms in the same process; dense = the model's NumPy twin, "
            f"one scenario (cases up to {DENSE_TWIN_MAX_TOWNS} towns); radiation ignores beta, so its batch "
            "is one shared pass (alone = its cost for a scenario of its own); '/caps' rows: a batch of the mixed "
            "caps, every scenario its own reach, 'x gravity' against gravity's batch of the same caps"
        )
        print(
            f"{'case':10} {'model':14} {'alone ms':>9} {'batch ms':>9} {'x gravity':>9} {'dense ms':>9} {'x dense':>8}  doubly error"
        )
        for r in results.values():
            for m in r["models"]:
                dense = (
                    f"{m['dense_ms']:>9.0f} {m['dense_ms'] / m['batch_ms']:>8.0f}"
                    if m["dense_ms"]
                    else f"{'-':>9} {'-':>8}"
                )
                err = f"  {m['ipf_error']:.1e}" if m["ipf_error"] is not None else ""
                alone = f"{m['one_ms']:>9.2f}" if np.isfinite(m["one_ms"]) else f"{'-':>9}"
                print(
                    f"{r['case']:10} {m['model']:14} {alone} {m['batch_ms']:>9.2f} {m['x_gravity']:>9.1f} {dense}{err}"
                )
        limits = {"attraction": 1.5, "radiation": 3.0, "doubly": 20.0, "radiation/caps": 3.0, "doubly/caps": 20.0}
        for m in results.get("mexico", {}).get("models", []):
            if m["model"] in limits:
                met = m["x_gravity"] <= limits[m["model"]]
                print(
                    f"  Mexico, {m['model']} batch / gravity batch (#13): {m['x_gravity']:.1f} <= {limits[m['model']]:g} {'met' if met else 'NOT met'}"
                    + ("  (one shared pass for the betas)" if m["model"] == "radiation" else "")
                )
    checked = [t for t in TARGETS if t[0] in results]
    if checked:
        print("targets (issues #4, #12):")
    for case, field, op, bound, what in checked:
        value = results[case][field]
        met = value <= bound if op == "<=" else value >= bound if op == ">=" else value < bound
        print(f"  {what:55} {value:10.2f} {op} {bound:<8g} {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
