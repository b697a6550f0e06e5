"""The command line: ``agglo run | config | info | verify | analyze | plot | explore | flows | times | calibrate``.

Overrides use Hydra's grammar (``key=value``, ``key=a,b,c``, ``key=range(1,3,0.5)``,
``key=choice(a,b)``); every key of docs/model.md can be set or swept.
"""

from __future__ import annotations

import argparse
import os
import sys

from agglo.engine.errors import UserError

USAGE_OVERRIDES = "Hydra overrides: key=value, sweeps key=a,b,c | key=range(start,stop,step) | key=choice(a,b)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agglo",
        description="Cluster small towns into agglomerations by commuting and by freight; sweep scenarios into a Zarr cube.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run the configured study (experiment=oaxaca: the Oaxaca study) and print its table"
    )
    run.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    run.add_argument("--quiet", action="store_true", help="no progress line")
    run.add_argument(
        "--figures",
        metavar="DIR",
        help="also write the cube's figures (as 'agglo plot') and its explore.html page to DIR",
    )
    run.add_argument(
        "--params",
        action="append",
        default=[],
        metavar="FILE.yaml",
        help="override file(s), e.g. from 'agglo calibrate'",
    )
    config = sub.add_parser("config", help="print the resolved configuration")
    config.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    config.add_argument("--params", action="append", default=[], metavar="FILE.yaml", help="override file(s)")
    flows = sub.add_parser("flows", help="write one scenario's origin-destination table (Parquet or CSV)")
    flows.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    flows.add_argument("--out", required=True, metavar="FILE.parquet", help="the table to write (.parquet or .csv)")
    flows.add_argument("--to-cores", action="store_true", help="only pairs whose destination is a core")
    times = sub.add_parser("times", help="write the built-in travel times of a mode as a travel-time table")
    times.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    times.add_argument("--mode", default="freight", help="commute or freight (default freight)")
    times.add_argument("--out", required=True, metavar="FILE.parquet", help="the table to write (.parquet or .csv)")
    times.add_argument(
        "--cap-min",
        type=float,
        default=None,
        help="keep the pairs within this many minutes (default: the mode's cap_min)",
    )
    cal = sub.add_parser("calibrate", help="fit gravity parameters to observed flows (Poisson regression)")
    cal.add_argument("--flows", required=True, help="CSV with origin, destination, flow (town_ids)")
    cal.add_argument("--towns", required=True, help="towns table (CSV or Parquet with docs/model.md's columns)")
    cal.add_argument("--model", default="production", choices=["gravity", "production", "attraction", "doubly"])
    cal.add_argument("--decay", default="power", choices=["power", "exponential"])
    cal.add_argument(
        "--cost", default="minutes", choices=["minutes", "km"], help="travel time (docs/model.md) or distance"
    )
    cal.add_argument("--mode", default="commute", choices=["commute", "freight"], help="the mode the values are for")
    cal.add_argument(
        "--pairs",
        default="all",
        choices=["all", "observed"],
        help="all: every pair of the flows' places, unlisted ones as 0 (default); observed: the listed pairs only "
        "(scikit-mobility's convention)",
    )
    cal.add_argument(
        "--out", metavar="FILE.yaml", help="write the fitted values as an override file for 'agglo run --params'"
    )
    cal.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    cal.add_argument(
        "overrides", nargs="*", help="config overrides (the mode's speed_kmh and circuity make the minutes)"
    )
    regions = sub.add_parser("regions", help="the first-level divisions of a country (data.admin1 codes)")
    regions.add_argument("country", help="an ISO 3166-1 alpha-2 code such as PL")
    regions.add_argument("--min-population", type=float, default=500.0, help="count towns of at least this size")
    verify = sub.add_parser("verify", help="check every array and written batch of a cube")
    verify.add_argument("store", help="path of the Zarr cube")
    info = sub.add_parser("info", help="summarise an existing result cube")
    info.add_argument("store", help="path of the Zarr cube")
    analyze = sub.add_parser(
        "analyze", help="sensitivity, cluster stability and scenario discovery of a cube (written next to it)"
    )
    analyze.add_argument("store", help="path of the Zarr cube")
    analyze.add_argument("--towns", help="co-assignment probabilities between these town_ids (comma-separated)")
    analyze.add_argument("--region", help=f"... or between all towns of this region (at most {500})")
    analyze.add_argument(
        "--ari", nargs=2, type=int, metavar=("A", "B"), help="adjusted Rand index of two scenarios (flat indices)"
    )
    analyze.add_argument(
        "--discover",
        type=float,
        metavar="GAP",
        help="PRIM box where freight coverage exceeds commuting coverage by GAP (0..1)",
    )
    plot = sub.add_parser("plot", help="write PNG figures of a cube (map, heatmap, sensitivity, stability, caps)")
    plot.add_argument("store", help="path of the Zarr cube")
    plot.add_argument(
        "--select",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="the scenario to map (default: the configured values)",
    )
    plot.add_argument("--out", required=True, help="folder for the PNGs")
    plot.add_argument("--x", help="swept key on the heatmap's x axis")
    plot.add_argument("--y", help="swept key on the heatmap's y axis")
    explore = sub.add_parser(
        "explore", help="write one self-contained HTML page to browse every scenario of a cube (maps, sliders)"
    )
    explore.add_argument("store", help="path of the Zarr cube")
    explore.add_argument("--out", required=True, help="the HTML file to write (replaced if it exists)")
    explore.add_argument(
        "--select", nargs="*", default=[], metavar="KEY=VALUE", help="the scenario shown first (default: configured)"
    )
    explore.add_argument(
        "--max-mb",
        type=float,
        default=40.0,
        help="largest size of the page's data; a larger cube is subsampled along its widest dimension (default 40)",
    )
    return parser


def cmd_run(args) -> int:
    from agglo.engine.config.compose import resolve
    from agglo.engine.run import execute
    from agglo.engine.store.reading import open_results
    from agglo.views.summary import header, table

    cfg, _ = resolve(_with_params(args.params, args.overrides))
    outcome = execute(cfg, quiet=args.quiet)
    ds = open_results(outcome.path, dask=False, check="presence")  # the run has just checked or written it all
    print(header(ds))
    print(table(ds))
    print(f"cube: {outcome.path}")
    if args.figures:
        from agglo.analysis.report import plot_store

        print("figures: " + ", ".join(plot_store(outcome.path, {}, args.figures)))
        from agglo.views.explore import explore_store

        print("explore: " + explore_store(outcome.path, f"{args.figures.rstrip('/')}/explore.html"))
    return 0


def cmd_config(args) -> int:
    from agglo.engine.config.compose import resolve
    from agglo.engine.config.text import to_yaml

    _, composed = resolve(_with_params(args.params, args.overrides))
    print(to_yaml(composed), end="")
    return 0


def _flatten(prefix: str, node, out: list) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    elif node is None:
        out.append(f"{prefix}=null")
    elif isinstance(node, list):
        out.append(f"{prefix}=[{','.join(map(str, node))}]")
    else:
        out.append(f"{prefix}={node}")


def _with_params(files: list, overrides: list) -> list:
    """Override files as dotted overrides, before the command line's (which win)."""
    from agglo.engine.config.compose import resolve

    from_files = []
    for path in files:
        try:
            import yaml

            with open(path, encoding="utf-8") as fh:
                node = yaml.safe_load(fh)
        except OSError as exc:
            raise UserError(
                f"--params {path!r}: cannot be read ({exc.strerror}); allowed: an existing YAML file"
            ) from None
        except UnicodeDecodeError as exc:
            raise UserError(
                f"--params {path!r}: not UTF-8 (it holds byte 0x{exc.object[exc.start]:02x}, which UTF-8 does not allow there); "
                "allowed: a UTF-8 YAML mapping"
            ) from None
        except yaml.YAMLError as exc:
            raise UserError(
                f"--params {path!r}: not YAML ({str(exc).splitlines()[0]}); allowed: a YAML mapping"
            ) from None
        if not isinstance(node, dict):
            raise UserError(f"--params {path!r}: not a mapping; allowed: a YAML mapping of config keys")
        mine = []
        _flatten("", node, mine)
        try:
            resolve(mine)
        except UserError as err:
            raise UserError(f"--params {path!r}: {err}") from None
        from_files += mine
    return from_files + list(overrides)


def cmd_flows(args) -> int:
    from agglo.engine.compute.flows import export

    path, rows = export(args.overrides, args.out, args.to_cores)
    print(f"{path}: {rows} origin-destination pairs (origin, destination, mode, travel_min, share, flow)")
    return 0


def cmd_times(args) -> int:
    from agglo.engine.data.times import export

    path, n, cap = export(args.overrides, args.mode, args.out, args.cap_min)
    print(
        f"{path}: {n} {args.mode} pairs within {cap:g} min (origin, destination, minutes); use it with {args.mode}.travel_times={path}"
    )
    return 0


def cmd_calibrate(args) -> int:
    from agglo.analysis import calibrate
    from agglo.engine.config.compose import resolve
    from agglo.engine.data.towns import load_table
    from agglo.engine.store.outputs import check_new_file, writing

    if args.out and not (args.overwrite and os.path.isfile(args.out)):
        check_new_file("--out", args.out)
    cfg, _ = resolve(args.overrides)
    towns = load_table(args.towns)
    flows = calibrate.read_flows(args.flows, towns)
    mode = cfg.mode(args.mode)
    o, d, y, cost, o_mass, d_mass = calibrate.pairs_for_fit(
        flows, towns, args.cost, mode.speed_kmh, mode.circuity, args.pairs
    )
    fit = calibrate.fit(args.model, args.decay, y, o, d, cost, o_mass, d_mass)
    print(
        f"{args.flows}: {int((y > 0).sum())} pairs with a flow of {y.size} fitted between "
        f"{len(set(o) | set(d))} places ({'the listed pairs only' if args.pairs == 'observed' else 'unlisted pairs count 0'}); "
        f"cost in {args.cost}"
    )
    print(calibrate.format_fit(fit))
    values = calibrate.engine_values(fit)
    print(
        "docs/model.md keys: "
        + ", ".join(f"{args.mode}.{k} = {v if isinstance(v, str) else f'{v:.6g}'}" for k, v in values.items())
    )
    if args.out:
        with writing(f"--out {args.out!r}"), open(args.out, "w" if args.overwrite else "x", encoding="utf-8") as fh:
            fh.write(calibrate.to_yaml(fit, args.mode, args.cost, args.flows))
        print(f"-> {args.out} (use: agglo run --params {args.out} ...)")
    return 0


def cmd_info(args) -> int:
    from agglo.engine.store import cube as store
    from agglo.engine.store import reading
    from agglo.views.summary import header, table

    args.store = store.cube_path(args.store)
    ds = reading.open_results(args.store)
    done = reading.batch_done(args.store)
    print(
        f"{args.store}: engine {ds.attrs.get('engine_version')}, input SHA-256 {ds.attrs.get('input_sha256', '')[:16]}…"
    )
    print("dims: " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    print(
        f"batches written: {int(done.sum())}/{done.size}"
        + ("" if done.all() else " (incomplete: 'agglo run' with the same config resumes it)")
    )
    from agglo.engine.store import lease

    holder = lease.read(args.store)
    if holder is not None:
        print(
            f"writer: {holder.describe()} (it holds the store's lease)"
            if isinstance(holder, lease.Holder)
            else f"writer: unknown (the lease file {lease.lease_path(args.store)!r} is not a lease record)"
        )
    print(
        "checksums: every written batch has one ('agglo verify' checks them; 'agglo run' does on resume)"
        if reading.has_checksums(args.store)
        else "checksums: none (a cube of an older engine; it cannot be verified)"
    )
    print(header(ds))
    print(table(ds))
    return 0


def cmd_regions(args) -> int:
    from agglo.api import regions

    table = regions(args.country, args.min_population)
    country = args.country.upper()
    print(f"{country}: {len(table)} first-level divisions (data.admin1), named by their largest town")
    print(f"{'admin1':<8} {'largest town':<32} {'towns':>7} {'population':>12}")
    for code, row in table.iterrows():
        print(f"{code:<8} {row.largest_town[:32]:<32} {row.towns:>7} {row.population:>12,.0f}")
    first = table.index[0]
    print(
        f"use: agglo run data.country={country} data.admin1={first}  (a list: 'data.admin1=[{first},...]'; all: data.admin1=null)"
    )
    return 0


def cmd_verify(args) -> int:
    """0: the cube is whole (every array as written, every written batch's chunks there and
    matching their checksums); 1: it is not (listed); 2: not a cube."""
    from agglo.engine.store import cube as store
    from agglo.engine.store import reading

    path = store.cube_path(args.store)
    if not reading.has_checksums(path):
        raise UserError(
            f"{path}: written by an engine before batch checksums (format {store.read_attrs(path).get('format')}); "
            "allowed: a cube written by this engine (store.mode=overwrite rewrites it)"
        )
    broken, plan, damaged = reading.damage(path, checksums=True)
    done = reading.batch_done(path)
    if broken or damaged:
        print(f"{path}: DAMAGED")
        for name, why in broken.items():
            print(f"  {name}: {why}")
        if damaged:
            print(
                f"  {len(damaged)} of {int(done.sum())} written batches have chunks missing or not matching their checksums:"
            )
            for b in damaged:
                print(f"    {plan.describe(b)}")
        print("  'agglo run' with the same config writes the arrays above again and recomputes exactly these batches")
        return 1
    print(
        f"{path}: verified, every variable and coordinate as written, all {int(done.sum())} written batches match "
        "their checksums" + ("" if done.all() else f" ({int((~done).sum())} of {done.size} not written yet)")
    )
    return 0


def cmd_analyze(args) -> int:
    from agglo.analysis.report import analyze_store

    if args.discover is not None and not 0 <= args.discover <= 1:
        raise UserError(f"--discover {args.discover}: a coverage gap; allowed: a number from 0 to 1")
    print(analyze_store(args.store, args.towns, args.region, tuple(args.ari) if args.ari else None, args.discover))
    return 0


def _select(items: list[str]) -> dict:
    select = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--select {item!r}: allowed: KEY=VALUE, e.g. commute.cap_min=60")
        select[key] = value
    return select


def cmd_plot(args) -> int:
    from agglo.analysis.report import plot_store

    for path in plot_store(args.store, _select(args.select), args.out, args.x, args.y):
        print(path)
    return 0


def cmd_explore(args) -> int:
    from agglo.views.explore import explore_store

    print(explore_store(args.store, args.out, _select(args.select), args.max_mb))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Options may come between overrides (`agglo run a=1 --quiet b=2`): argparse stops the
    # overrides at the first option, so the later ones come back here, in their order.
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    commands = {
        "run": cmd_run,
        "config": cmd_config,
        "info": cmd_info,
        "verify": cmd_verify,
        "regions": cmd_regions,
        "analyze": cmd_analyze,
        "plot": cmd_plot,
        "explore": cmd_explore,
        "calibrate": cmd_calibrate,
        "flows": cmd_flows,
        "times": cmd_times,
    }
    try:
        if args.command == "run":
            from agglo.engine.executors.interrupts import deferred

            with deferred():  # Ctrl-C acts between steps and batches (see engine/executors/interrupts.py)
                return commands[args.command](args)
        return commands[args.command](args)
    except UserError as err:
        print(f"agglo: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except (RuntimeError, ValueError) as exc:
        if "decompression" not in str(exc).lower() or not getattr(args, "store", None):
            raise
        print(
            f"agglo: error: {args.store}: a chunk of the cube cannot be decoded (damaged: {str(exc).splitlines()[0]}); "
            "allowed: 'agglo verify' to find its batch, then 'agglo run' with the same config to recompute it",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        import signal

        from agglo.engine.executors import interrupts

        what = "terminated (SIGTERM)" if interrupts.received == signal.SIGTERM else "interrupted"
        print(f"agglo: {what}; run again with the same config to resume", file=sys.stderr)
        if interrupts.abandoned:  # a compiled step still runs in a thread: exit without waiting for it
            import os

            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(128 + int(interrupts.received))
        return 128 + int(interrupts.received)
    except BrokenPipeError:  # `agglo info CUBE | head`: the reader left; nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
