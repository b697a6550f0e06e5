"""``agglo times``: the travel times the built-in model uses, written as a travel-time table.

For one mode of a configuration: every ordered pair of towns with docs/model.md's
straight-line ``t_ij = 60 · circuity · d_ij / speed_kmh <= cap`` (the mode's ``cap_min``, or
``--cap-min``), with its float64 minutes, as ``origin, destination, minutes`` (Parquet, or
CSV by the file's suffix; CSV floats read back as the same float64). Users compare, edit or
replace it, and feed it back with ``MODE.travel_times=FILE`` (docs/traveltimes.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from agglo.engine.config.names import MODES
from agglo.engine.errors import UserError


def engine_pairs(towns, circuity: float, speed_kmh: float, cap_min: float):
    """(origin, destination, minutes) of every pair within ``cap_min``: the kernels' own
    float64 times (:func:`agglo.kernels.tables.pair_minutes_km`), rows by distance."""
    from agglo.engine.planning.scenarios import widened
    from agglo.kernels import build_neighbourhood
    from agglo.kernels.reach import reach_km_of
    from agglo.kernels.tables import pair_minutes_km

    radius = widened(reach_km_of(cap_min, speed_kmh, circuity))
    offsets, neighbour, _ = build_neighbourhood(towns.lat, towns.lon, radius)
    lat = np.ascontiguousarray(towns.lat, dtype=np.float64)
    lon = np.ascontiguousarray(towns.lon, dtype=np.float64)
    minutes = pair_minutes_km(offsets, neighbour, lat, lon, float(circuity), float(speed_kmh))
    origin = np.repeat(np.arange(offsets.shape[0] - 1, dtype=np.int64), np.diff(offsets))
    keep = minutes <= cap_min
    return origin[keep], neighbour[keep].astype(np.int64), minutes[keep]


def export(overrides: list, mode: str, out: str, cap_min: float | None) -> tuple[str, int, float]:
    """Write the table of ``mode`` to ``out``; returns (out, pairs, cap used)."""
    from agglo.engine.config.compose import resolve
    from agglo.engine.data.load import load_towns
    from agglo.engine.store.outputs import check_new_file, writing

    if mode not in MODES:
        raise UserError(f"--mode {mode!r}; allowed: {', '.join(MODES)}")
    suffix = os.path.splitext(out)[1].lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"--out {out!r}: unknown file type {suffix or '(none)'!r}; allowed: .parquet, .csv")
    check_new_file("--out", out)
    cfg, _ = resolve(overrides)
    mc = cfg.mode(mode)
    if mc.travel_times is not None:
        raise UserError(
            f"{mode}.travel_times = {mc.travel_times!r}: this mode's times already come from a table; "
            f"allowed: {mode}.travel_times=null to write the built-in model's times"
        )
    cap = float(mc.cap_min if cap_min is None else cap_min)
    if not (np.isfinite(cap) and cap >= 0):
        raise UserError(f"--cap-min {cap_min!r}; allowed: a finite number >= 0 (minutes)")
    towns = load_towns(cfg)
    origin, dest, minutes = engine_pairs(towns, mc.circuity, mc.speed_kmh, cap)
    with writing(f"--out {out!r}"):
        n = write_table(out, towns, origin, dest, minutes)
    return out, n, cap


def write_table(path: str, towns, origin: np.ndarray, dest: np.ndarray, minutes: np.ndarray) -> int:
    """Write the pairs ``origin[k] -> dest[k]`` (town indices) in ``minutes[k]`` as a table,
    written aside and renamed into place: Parquet for a ``.parquet`` path, else CSV (Arrow
    writes the shortest text that reads back the same float64). Returns the pairs written."""
    import pyarrow as pa

    ids = np.asarray(towns.town_id)
    if not np.issubdtype(ids.dtype, np.integer):
        ids = ids.astype(str)
    table = pa.table({"origin": ids[origin], "destination": ids[dest], "minutes": np.asarray(minutes, np.float64)})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(target.name + ".partial")
    if target.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, aside)
    else:
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, aside)
    os.replace(aside, target)
    return int(table.num_rows)
