"""The towns of a configuration: GeoNames places, the user's table or synthetic towns,
with ``data.min_population`` applied."""

from __future__ import annotations

from agglo.engine.config.schema import AggloConfig
from agglo.engine.data.towns import Towns, from_frame, load_geonames, load_table, synthetic
from agglo.engine.errors import UserError


def load_towns(cfg: AggloConfig) -> Towns:
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
