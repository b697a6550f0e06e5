"""The command line: ``agglo run|config|info``.

Overrides use Hydra's grammar (``key=value``, ``key=a,b,c``, ``key=range(1,3,0.5)``,
``key=choice(a,b)``); every key of MODEL.md can be set or swept.
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import UserError

USAGE_OVERRIDES = "Hydra overrides: key=value, sweeps key=a,b,c | key=range(start,stop,step) | key=choice(a,b)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agglo",
        description="Cluster small towns into agglomerations by commuting and by freight; sweep scenarios into a Zarr cube.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the configured study (default: Oaxaca) and print its table")
    run.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    run.add_argument("--quiet", action="store_true", help="no progress line")
    config = sub.add_parser("config", help="print the resolved configuration")
    config.add_argument("overrides", nargs="*", help=USAGE_OVERRIDES)
    info = sub.add_parser("info", help="summarise an existing result cube")
    info.add_argument("store", help="path of the Zarr cube")
    return parser


def cmd_run(args) -> int:
    from engine.config import resolve
    from engine.run import execute
    from engine.store import open_results
    from engine.summary import header, table

    cfg, cfg_omega = resolve(args.overrides)
    outcome = execute(cfg, cfg_omega, quiet=args.quiet)
    ds = open_results(outcome.path)
    print(header(ds))
    print(table(ds))
    print(f"cube: {outcome.path}")
    return 0


def cmd_config(args) -> int:
    from engine.config import resolve, to_yaml

    _, cfg_omega = resolve(args.overrides)
    print(to_yaml(cfg_omega), end="")
    return 0


def cmd_info(args) -> int:
    from engine import store
    from engine.summary import header, table

    args.store = store.local_path(args.store)
    if not store.exists(args.store):
        raise UserError(f"{args.store}: no such store; allowed: the path of a cube written by 'agglo run'")
    ds = store.open_results(args.store)
    done = store.batch_done(args.store)
    print(
        f"{args.store}: engine {ds.attrs.get('engine_version')}, input SHA-256 {ds.attrs.get('input_sha256', '')[:16]}…"
    )
    print("dims: " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()))
    print(
        f"batches written: {int(done.sum())}/{done.size}"
        + ("" if done.all() else " (incomplete: 'agglo run' with the same config resumes it)")
    )
    print(header(ds))
    print(table(ds))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"run": cmd_run, "config": cmd_config, "info": cmd_info}[args.command](args)
    except UserError as err:
        print(f"agglo: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("agglo: interrupted; run again with the same config to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
