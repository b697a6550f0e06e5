"""Hydra at the edge: the YAML of ``configs/`` and the command line's overrides (Hydra's
grammar, sweeps included) composed into one checked :class:`~agglo.engine.config.schema.AggloConfig`.

Only the entry points (the command line, the Python API, the studies) import this module;
planning, compute and the workers see the typed config alone.
"""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from agglo.engine.config.schema import AggloConfig
from agglo.engine.errors import UserError

ConfigStore.instance().store(name="agglo_schema", node=AggloConfig)


def first_line(exc: BaseException) -> str:
    parts = []
    while exc is not None:
        text = str(exc).strip()
        if text:
            parts.append(text.splitlines()[0])
        exc = exc.__cause__ or exc.__context__
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    return ": ".join(seen[:2]) if seen else "invalid configuration"


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[Any]]]:
    """Separate Hydra sweep overrides (``a=1,2``, ``range()``, ``choice()``) from plain ones."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as exc:  # noqa: BLE001 - Hydra raises its own grammar errors
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        bad = getattr(exc, "override", None)
        raise UserError(
            f"command line: cannot parse {bad!r} ({text}); allowed: {OVERRIDE_GRAMMAR}"
            if bad
            else f"command line: {text}; allowed: {OVERRIDE_GRAMMAR}"
        ) from None
    plain: list[str] = []
    grid: dict[str, list[Any]] = {}
    for ov in parsed:
        key = ov.key_or_group
        if key in ("sweep.grid", "sweep.bounds") and not ov.is_sweep_override():
            # Keys of these maps are dotted config keys, which Hydra's merge would read as paths.
            value = ov.value()
            if not isinstance(value, dict):
                raise UserError(f"{key} = {value!r}; allowed: a mapping such as {{commute.cap_min:[30,60]}}")
            grid[key] = value
            continue
        if ov.is_sweep_override():
            if type(ov.value()).__name__ == "IntervalSweep":
                raise UserError(
                    f"{ov.key_or_group}: interval() sweeps are for optimisers; allowed: a list, range() or choice()"
                )
            grid[ov.key_or_group] = list(ov.sweep_iterator())
        else:
            plain.append(ov.input_line)
    return plain, grid


OVERRIDE_GRAMMAR = (
    "key=value, key=a,b,c, key=range(start,stop,step), key=choice(a,b), key=[a,b], key={k: v}; "
    "quote a value with spaces, brackets or commas: \"key='my (towns).csv'\""
)
TYPE_WORDS = {"Float": "a number", "Integer": "an integer", "Boolean": "true or false", "String": "text"}


def typed_error(exc: BaseException) -> str | None:
    """'KEY = VALUE: not TYPE; allowed: ...' for OmegaConf's type errors, else None."""
    cause = exc
    while cause is not None:
        key = getattr(cause, "full_key", None)
        text = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        if key and "could not be converted to" in text:
            target = text.rsplit("could not be converted to", 1)[1].strip()
            value = text.split("'")[1] if text.count("'") >= 2 else "?"
            return f"{key} = {value!r}: not {TYPE_WORDS.get(target, target)}; allowed: {TYPE_WORDS.get(target, target)}"
        cause = cause.__cause__ or cause.__context__
    return None


def _compose(overrides: list[str]):
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="agglo.configs", version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except Exception as exc:  # noqa: BLE001 - composition errors are the user's overrides
        typed = typed_error(exc)
        if typed:
            raise UserError(typed) from None
        hint = "; allowed: the keys that 'agglo config' prints" if "not in" in first_line(exc) else ""
        raise UserError(f"configuration: {first_line(exc)}{hint}") from None


def to_object(cfg) -> AggloConfig:
    try:
        return OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - omegaconf type errors
        cause = exc
        while cause.__cause__ is not None or isinstance(cause.__context__, UserError):
            cause = cause.__cause__ or cause.__context__
            if isinstance(cause, UserError):
                raise cause from None
        raise UserError(f"configuration: {first_line(exc)}") from None


def resolve(overrides: list[str] | tuple[str, ...] = ()) -> tuple[AggloConfig, Any]:
    """Compose ``configs/config.yaml`` with the overrides; return the checked config and
    its OmegaConf form (what ``agglo config`` prints; a run takes the checked config alone).
    Command-line sweeps join ``sweep.grid`` (and replace a YAML entry for the same key)."""
    plain, cli_grid = split_overrides(list(overrides))
    cfg = _compose(plain)
    _user_values_win(cfg, plain)
    for mapping in ("sweep.grid", "sweep.bounds"):
        if mapping in cli_grid:
            node = cfg.sweep.grid if mapping == "sweep.grid" else cfg.sweep.bounds
            with open_dict(node):
                node.clear()
                for k, v in cli_grid.pop(mapping).items():
                    node[k] = v
    with open_dict(cfg.sweep.grid):
        for key, values in cli_grid.items():
            cfg.sweep.grid[key] = values
    checked = to_object(cfg)
    cfg.data.admin1 = checked.data.admin1  # one spelling (77, [77], '77') in the stored config
    from agglo.engine.config.sweep import check_sweep  # it types values through this module

    check_sweep(cfg)
    return checked, cfg


def _user_values_win(cfg, plain: list[str]) -> None:
    """What the command line sets, it sets: one value for a key that the experiment sweeps
    (or samples) replaces that sweep; forced cores the user did not set (an experiment's)
    are dropped where they are not among the towns instead of stopping the run."""
    keys = {_key_of(line) for line in plain}
    for mapping in (cfg.sweep.grid, cfg.sweep.bounds):
        for key in [k for k in mapping if k in keys]:
            with open_dict(mapping):
                del mapping[key]
    if "cores.ids" not in keys and "cores.missing" not in keys and len(cfg.cores.ids) > 0:
        cfg.cores.missing = "drop"


def _key_of(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")
