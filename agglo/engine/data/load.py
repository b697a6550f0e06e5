"""The towns of a configuration: GeoNames places, the user's table or synthetic towns,
with ``data.min_population`` applied."""

from __future__ import annotations

import numpy as np

from agglo.engine.config.schema import AggloConfig
from agglo.engine.data.towns import Towns, from_frame, load_geonames, load_table, synthetic
from agglo.engine.errors import UserError


def load_towns(cfg: AggloConfig, report=None) -> Towns:
    """The towns a run works on; ``report``: called with one line when places are left out
    as parts of a larger place (agglo/engine/data/parts.py)."""
    d = cfg.data
    towns = _read(cfg)
    if d.parts == "on" or (d.parts == "auto" and d.source == "geonames"):
        from agglo.engine.data.parts import describe_parts, part_of, without_parts

        forced = forced_ids(towns, list(cfg.cores.ids))
        parent = part_of(towns, d.parts_density, d.parts_ratio, keep=forced)
        if report is not None and (parent >= 0).any():
            report(describe_parts(towns, parent))
        towns = without_parts(towns, parent)
    return towns


def check_mass(towns: Towns, models: dict) -> None:
    """A ``mass`` column (the destination mass) is read by the gravity model only;
    ``models``: mode -> the model names its scenarios use."""
    if towns.mass is None:
        return
    for mode, names in models.items():
        other = sorted(set(names) - {"gravity"})
        if other:
            raise UserError(
                f"{towns.source}: column 'mass' is read by the gravity model only, and {mode}.model = {other[0]}; "
                "allowed: model=gravity with a mass column, or a table without one (the population is the mass)"
            )


def forced_ids(towns: Towns, ids: list) -> np.ndarray:
    """Towns forced to be cores (the table's ``core`` column, ``cores.ids`` found in it)."""
    wanted = {str(t) for t in ids}
    return towns.core | np.array([str(t) in wanted for t in towns.town_id], dtype=bool)


def _read(cfg: AggloConfig) -> Towns:
    d = cfg.data
    if d.source == "geonames":
        return load_geonames(d.country, None if d.admin1 is None else list(d.admin1), d.min_population)
    if d.source == "table":
        towns = load_table(d.path)
    else:
        towns = synthetic(d.n, d.seed)
    keep = towns.population >= d.min_population
    if not keep.all():
        frame = towns.frame()[keep]
        if towns.region is None:
            frame = frame.drop(columns="region")
        if len(frame) == 0:
            raise UserError(
                f"data.min_population = {d.min_population}: no town of {towns.source} is that large; allowed: a smaller number"
            )
        towns = from_frame(frame.reset_index(drop=True), towns.source)
    return towns
