"""The command line: ``agglo run | config | info | verify | analyze | plot | explore | flows | times | calibrate``,
each a call of the Python API (:mod:`agglo.api`) and a print.

Overrides use Hydra's grammar (``key=value``, ``key=a,b,c``, ``key=range(1,3,0.5)``,
``key=choice(a,b)``); every key of docs/model.md can be set or swept.
"""

from __future__ import annotations

import argparse
import sys

from agglo.engine.errors import UserError

USAGE_OVERRIDES = "Hydra overrides: key=value, sweeps key=a,b,c | key=range(start,stop,step) | key=choice(a,b)"


def _add_run(sub) -> None:
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


def _add_config(sub) -> None:
    config = sub.add_parser("config", help="print the resolved configuration")
    config.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    config.add_argument("--params", action="append", default=[], metavar="FILE.yaml", help="override file(s)")


def _add_flows(sub) -> None:
    flows = sub.add_parser("flows", help="write one scenario's origin-destination table (Parquet or CSV)")
    flows.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    flows.add_argument("--out", required=True, metavar="FILE.parquet", help="the table to write (.parquet or .csv)")
    flows.add_argument("--to-cores", action="store_true", help="only pairs whose destination is a core")


def _add_times(sub) -> None:
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


def _add_cal(sub) -> None:
    cal = sub.add_parser("calibrate", help="fit gravity parameters to observed flows (Poisson regression)")
    cal.add_argument("--flows", required=True, help="CSV with origin, destination, flow (town_ids)")
    cal.add_argument("--towns", required=True, help="towns table (CSV or Parquet with docs/model.md's columns)")
    cal.add_argument(
        "--model", default=None, choices=["gravity", "production", "attraction", "doubly"], help="default: production"
    )
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
        "--places",
        metavar="TOWNS",
        help="--towns are zones (counties, municipalities) and this towns table, with a 'zone' column (the zone's "
        "town_id), lists the towns in them: fit the doubly-constrained model between the zones' towns, so beta and "
        "the self time are a town's",
    )
    cal.add_argument(
        "--near-km", type=float, default=150.0, help="with --places: zone pairs nearer than this use their towns"
    )
    cal.add_argument(
        "--curve",
        metavar="MINUTES",
        help="with --places: also measure the deterrence, a value per bin between these minutes (e.g. "
        "0,15,30,45,60,90,120; the last bin open), beside the power law",
    )
    cal.add_argument(
        "--out", metavar="FILE.yaml", help="write the fitted values as an override file for 'agglo run --params'"
    )
    cal.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    cal.add_argument(
        "overrides", nargs="*", help="config overrides (the mode's speed_kmh and circuity make the minutes)"
    )


def _add_regions(sub) -> None:
    regions = sub.add_parser("regions", help="the first-level divisions of a country (data.admin1 codes)")
    regions.add_argument("country", help="an ISO 3166-1 alpha-2 code such as PL")
    regions.add_argument("--min-population", type=float, default=500.0, help="count towns of at least this size")


def _add_verify(sub) -> None:
    verify = sub.add_parser("verify", help="check every array and written batch of a cube")
    verify.add_argument("store", help="path of the Zarr cube")


def _add_info(sub) -> None:
    info = sub.add_parser("info", help="summarise an existing result cube")
    info.add_argument("store", help="path of the Zarr cube")


def _add_analyze(sub) -> None:
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


def _add_plot(sub) -> None:
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


def _add_explore(sub) -> None:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agglo",
        description="Cluster small towns into agglomerations by commuting and by freight; sweep scenarios into a Zarr cube.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _add_run,
        _add_config,
        _add_flows,
        _add_times,
        _add_cal,
        _add_regions,
        _add_verify,
        _add_info,
        _add_analyze,
        _add_plot,
        _add_explore,
    ):
        add(sub)
    return parser


def cmd_run(args) -> int:
    from agglo import api
    from agglo.views.summary import header, table

    path = api.run_store(overrides=args.overrides, params=args.params, quiet=args.quiet)
    ds = api.open_results(path, check="presence", dask=False)  # the run has just checked or written it all
    print(header(ds))
    print(table(ds))
    print(f"cube: {path}")
    if args.figures:
        print("figures: " + ", ".join(api.plot(path, args.figures)))
        print("explore: " + api.explore(path, f"{args.figures.rstrip('/')}/explore.html"))
    return 0


def cmd_config(args) -> int:
    from agglo.api import config_text

    print(config_text(overrides=args.overrides, params=args.params), end="")
    return 0


def cmd_flows(args) -> int:
    from agglo.api import flows

    path, rows = flows(overrides=args.overrides, out=args.out, to_cores=args.to_cores)
    print(f"{path}: {rows} origin-destination pairs (origin, destination, mode, travel_min, share, flow)")
    return 0


def cmd_times(args) -> int:
    from agglo.api import times

    path, n, cap = times(overrides=args.overrides, mode=args.mode, out=args.out, cap_min=args.cap_min)
    print(
        f"{path}: {n} {args.mode} pairs within {cap:g} min (origin, destination, minutes); use it with {args.mode}.travel_times={path}"
    )
    return 0


def cmd_calibrate(args) -> int:
    from agglo.api import calibrate

    _, text = calibrate(
        args.flows, args.towns, model=args.model, decay=args.decay, cost=args.cost, mode=args.mode,
        pairs=args.pairs, overrides=args.overrides, out=args.out, overwrite=args.overwrite,
        places=args.places, near_km=args.near_km, curve=args.curve,
    )  # fmt: skip
    print(text)
    return 0


def cmd_info(args) -> int:
    from agglo.api import describe

    print(describe(args.store))
    return 0


def cmd_regions(args) -> int:
    from agglo.views.summary import regions_text

    print(regions_text(args.country, args.min_population))
    return 0


def cmd_verify(args) -> int:
    """0: the cube is whole (every array as written, every written batch's chunks there and
    matching their checksums); 1: it is not (listed); 2: not a cube."""
    from agglo.api import verify

    whole, text = verify(args.store)
    print(text)
    return 0 if whole else 1


def cmd_analyze(args) -> int:
    from agglo.api import analyze

    print(analyze(args.store, args.towns, args.region, tuple(args.ari) if args.ari else None, args.discover))
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
    from agglo.api import plot

    for path in plot(args.store, args.out, _select(args.select), args.x, args.y):
        print(path)
    return 0


def cmd_explore(args) -> int:
    from agglo.api import explore

    print(explore(args.store, args.out, _select(args.select), args.max_mb))
    return 0


COMMANDS = {
    "run": cmd_run, "config": cmd_config, "info": cmd_info, "verify": cmd_verify, "regions": cmd_regions,
    "analyze": cmd_analyze, "plot": cmd_plot, "explore": cmd_explore, "calibrate": cmd_calibrate,
    "flows": cmd_flows, "times": cmd_times,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Options may come between overrides (`agglo run a=1 --quiet b=2`): argparse stops the
    # overrides at the first option, so the later ones come back here, in their order.
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
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
        from agglo.engine.executors.interrupts import exit_status

        return exit_status()
    except BrokenPipeError:  # `agglo info CUBE | head`: the reader left; nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
