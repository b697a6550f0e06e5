"""``agglo flows``: the sparse origin-destination table of one scenario.

One row per reachable pair and mode (``--to-cores``: only pairs whose destination is a
core of the scenario): origin and destination ``town_id``, ``mode``, ``travel_min``
(docs/model.md's t_ij), ``share`` (s_ij) and ``flow`` (T_ij = population_i · s_ij), computed
in float64 from the exact travel times. Parquet (or CSV by the file's suffix), for
pandas, QGIS or a join back to the towns.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from agglo.engine.compute.pairs import scenario_pairs
from agglo.engine.config.names import MODES
from agglo.engine.data.traveltimes import with_tables
from agglo.engine.errors import UserError
from agglo.engine.network.build import forced_cores, prepare
from agglo.engine.planning.scenarios import batch_parameters, reach_radii
from agglo.engine.store.outputs import check_new_file, writing


def flow_table(cfg, towns, to_cores: bool = False) -> pd.DataFrame:
    from agglo.engine.data.load import check_mass

    check_mass(towns, {mode: [cfg.mode(mode).model] for mode in MODES})
    params = batch_parameters(cfg, {}, 1)
    forced = forced_cores(towns, list(cfg.cores.ids))
    radii = with_tables(cfg, reach_radii(params))
    network = prepare(towns, forced, radii, core_floor=float(cfg.cores.min_population))
    is_core = (network.population >= float(cfg.cores.min_population)) | forced
    ids = np.asarray(towns.town_id)
    parts = []
    for mode in MODES:
        pairs = scenario_pairs(network, params, mode)
        keep = pairs["reachable"]
        if to_cores:
            keep &= is_core[pairs["destination"]]
        parts.append(
            pd.DataFrame(
                {
                    "origin": ids[pairs["origin"][keep]],
                    "destination": ids[pairs["destination"][keep]],
                    "mode": mode,
                    "travel_min": pairs["travel_min"][keep],
                    "share": pairs["share"][keep],
                    "flow": pairs["flow"][keep],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def export(overrides: list, out: str, to_cores: bool) -> tuple[str, int]:
    from agglo.engine.config.compose import resolve
    from agglo.engine.data.load import load_towns

    suffix = os.path.splitext(out)[1].lower()
    if suffix not in (".parquet", ".csv"):
        raise UserError(f"--out {out!r}: unknown file type {suffix or '(none)'!r}; allowed: .parquet, .csv")
    check_new_file("--out", out)
    cfg, _ = resolve(overrides)
    sweep = cfg.sweep
    if len(sweep.grid) or sweep.table is not None or sweep.sampler is not None:
        raise UserError(
            "agglo flows: the configuration sweeps scenarios; allowed: one scenario "
            "(add sweep.grid={} and set the keys, e.g. commute.cap_min=45)"
        )
    table = flow_table(cfg, load_towns(cfg), to_cores)
    tmp = out + ".partial"
    try:
        with writing(f"--out {out!r}"):
            if suffix == ".parquet":
                table.to_parquet(tmp, index=False)
            else:
                table.to_csv(tmp, index=False)
            os.replace(tmp, out)  # never a half-written file under the asked name
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out, len(table)
