"""Checks of a sweep at composition: every swept key exists and may be swept, and every
value it takes passes the same checks as a single value would."""

from __future__ import annotations

import math
from typing import Any

from omegaconf import OmegaConf

from agglo.engine.config.compose import first_line, to_object, typed_error
from agglo.engine.config.names import MODES, TABLE_IGNORES
from agglo.engine.config.schema import SWEEPABLE, AggloConfig, finite, need
from agglo.engine.errors import UserError
from agglo.engine.planning.scenario_file import table_values


def check_sweep(cfg) -> None:
    """Every swept key exists and is sweepable; every swept value passes the checks."""
    sweep = cfg.sweep
    probe = _Probe(cfg)
    kinds = [
        name
        for name, on in (
            ("sweep.grid", len(sweep.grid) > 0),
            ("sweep.table", sweep.table is not None),
            ("sweep.sampler", sweep.sampler is not None),
        )
        if on
    ]
    if len(kinds) > 1:
        raise UserError(
            f"{kinds[1]} is set together with {kinds[0]}; allowed: one kind of sweep at a time "
            f"(set the other to null or {{}})"
        )
    if sweep.table is not None:
        for key, values in table_values(cfg).items():
            if key not in SWEEPABLE:
                raise UserError(f"{sweep.table}: column '{key}' cannot be swept; allowed: {', '.join(SWEEPABLE)}")
            _refuse_unread(cfg, key, f"{sweep.table}: column '{key}'")
            first_row: dict = {}
            for k, v in enumerate(values.tolist()):
                first_row.setdefault(repr(v), (k, v))
            for k, v in first_row.values():
                try:
                    probe.check(key, None if (isinstance(v, float) and math.isnan(v)) else v)
                except UserError as err:
                    raise UserError(f"{sweep.table}, row {k + 2}: column '{key}': {err}") from None
        return
    if sweep.sampler is not None:
        need(sweep.sampler in ("sobol", "morris", "lhs"), "sweep.sampler", sweep.sampler, "null, sobol, morris, lhs")
        need(len(sweep.bounds) > 0, "sweep.bounds", dict(sweep.bounds), "key -> [low, high] for every sampled key")
        need(sweep.n >= 1, "sweep.n", sweep.n, "an integer >= 1")
        keys = list(sweep.bounds.keys())
    else:
        keys = list(sweep.grid.keys())
    for key in keys:
        where = f"sweep.{'bounds' if sweep.sampler else 'grid'}.{key}"
        if key not in SWEEPABLE:
            raise UserError(f"{where}: '{key}' cannot be swept; allowed: {', '.join(SWEEPABLE)}")
        _refuse_unread(cfg, key, where)
    for key, values in sweep.grid.items():
        values = list(values) if OmegaConf.is_list(values) or isinstance(values, list) else [values]
        if not values:
            raise UserError(f"sweep.grid.{key} = []: no values; allowed: a non-empty list")
        if len(set(map(repr, values))) != len(values):
            raise UserError(f"sweep.grid.{key} = {list(values)!r}: repeated value; allowed: distinct values")
        for v in values:
            probe.check(key, v)
    for key, bounds in sweep.bounds.items():
        b = list(bounds)
        ok = len(b) == 2 and all(finite(x) for x in b) and b[0] < b[1]
        need(ok, f"sweep.bounds.{key}", b, "[low, high] with low < high")
        if ok:
            probe.check(key, b[0])
            probe.check(key, b[1])


def _refuse_unread(cfg, key: str, where: str) -> None:
    """A swept speed_kmh or circuity of a mode on a travel-time table would give scenarios
    that differ in name only: refused."""
    mode, _, name = key.partition(".")
    if mode in MODES and name in TABLE_IGNORES and OmegaConf.select(cfg, f"{mode}.travel_times") is not None:
        raise UserError(
            f"{where}: {mode}.{name} is not read when {mode}.travel_times is set; allowed: sweep "
            f"{mode}.time_factor (the table's minutes times it: 1.2 is roads 20 % slower)"
        )


class _Probe:
    """The config without its sweep, typed once; ``check`` sets one key to a swept value,
    runs every check of the typed config, and puts the key back (typing a whole config per
    value would be most of a large sweep's start)."""

    def __init__(self, cfg) -> None:
        self.cfg = None
        self.source = cfg

    def check(self, key: str, value: Any) -> None:
        if self.cfg is None:
            probe = OmegaConf.masked_copy(self.source, [k for k in self.source.keys() if k != "sweep"])
            self.cfg = OmegaConf.merge(OmegaConf.structured(AggloConfig), probe)
        original = OmegaConf.select(self.cfg, key)
        try:
            OmegaConf.update(self.cfg, key, value, merge=True)
        except Exception as exc:  # noqa: BLE001
            typed = typed_error(exc)
            why = typed.split(": ", 1)[1] if typed else first_line(exc)
            raise UserError(f"sweep.grid.{key}: value {value!r}: {why}") from None
        try:
            to_object(self.cfg)
        finally:
            OmegaConf.update(self.cfg, key, original, merge=True)
