"""Observed flows in: the flows file checked like a town table, the pairs a fit sees
(with their costs and masses), and the whole ``agglo calibrate`` step from files to a fit
(between the towns of the flows, or between zones through the towns they hold: ``--places``)."""

from __future__ import annotations

import numpy as np

from agglo.analysis import calibrate


def read_flows(path: str, towns) -> pd.DataFrame:  # noqa: F821
    """An observed-flows CSV (``origin``, ``destination``, ``flow``; town_ids of ``towns``),
    checked like a town table: one line naming the file, row or column, and what is allowed."""
    from pathlib import Path

    import pandas as pd

    from agglo.engine.errors import UserError

    file = Path(path)
    if not file.is_file():
        raise UserError(f"--flows {path!r}: no such file; allowed: an existing CSV with origin, destination, flow")
    try:
        frame = pd.read_csv(file, dtype={"origin": str, "destination": str}, encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 (it holds byte 0x{exc.object[exc.start]:02x}, which UTF-8 does not allow there); "
            "allowed: a UTF-8 CSV with columns origin, destination, flow"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(
            f"{path}: cannot be read as CSV ({str(exc).splitlines()[0] or type(exc).__name__}); "
            "allowed: a UTF-8 CSV with columns origin, destination, flow"
        ) from None
    missing = [c for c in ("origin", "destination", "flow") if c not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing column {missing[0]!r}; allowed: a CSV with columns origin, destination, flow")
    if len(frame) == 0:
        raise UserError(f"{path}: no rows after the header; allowed: one row per observed origin-destination flow")
    flow = pd.to_numeric(frame["flow"], errors="coerce")
    known = {str(t) for t in towns.town_id}
    seen: dict = {}
    for k in range(len(frame)):
        row = k + 2  # 1-based, after the header
        if not np.isfinite(flow.iloc[k]) or flow.iloc[k] < 0:
            raise UserError(f"{path}: row {row}: flow = {str(frame['flow'].iloc[k])!r}; allowed: a number >= 0")
        for col in ("origin", "destination"):
            if str(frame[col].iloc[k]) not in known:
                raise UserError(
                    f"{path}: row {row}: {col} = {frame[col].iloc[k]!r} is not a town_id of {towns.source}; "
                    "allowed: town_ids of the towns table"
                )
        pair = (str(frame["origin"].iloc[k]), str(frame["destination"].iloc[k]))
        if pair in seen:
            raise UserError(
                f"{path}: row {row}: origin {pair[0]!r} -> destination {pair[1]!r} repeats row {seen[pair]} "
                "(refused, not summed); allowed: one row per origin-destination pair"
            )
        seen[pair] = row
    out = pd.DataFrame({"origin": frame["origin"].astype(str), "destination": frame["destination"].astype(str)})
    out["flow"] = flow.astype(np.float64)
    return out


PAIRS = ("all", "observed")


def pairs_for_fit(flows, towns, cost: str, speed: float, circuity: float, pairs: str = "all"):
    """The pairs the regression sees, with their cost (km, or docs/model.md's minutes), masses and
    observed flow. Two conventions (flows from a place to itself are left out in both):

    ``all``       every ordered pair of distinct places that appear in the flows; a pair the
                  file does not list counts 0 (a zero is an observation: nobody commutes there)
    ``observed``  only the pairs the file lists (scikit-mobility's gravity fit; its New York
                  2011 example lists only positive flows, so the zeros are unknown, not zero)
    """
    from agglo.engine.errors import UserError
    from agglo.kernels.reach import haversine_km, minutes_of_km

    flows = (
        flows[flows["origin"] != flows["destination"]].groupby(["origin", "destination"], as_index=False)["flow"].sum()
    )
    places = sorted(set(flows["origin"]) | set(flows["destination"]))
    if len(places) < 2:
        raise UserError(
            "--flows: no flow between two different places (flows from a place to itself are left out); "
            "allowed: flows between at least two places"
        )
    index = {str(t): i for i, t in enumerate(towns.town_id)}
    listed = {(o, d): f for o, d, f in flows.itertuples(index=False)}
    if pairs == "observed":
        wanted = list(listed)
    else:
        wanted = [(o, d) for o in places for d in places if o != d]
    rows = []
    for o, d in wanted:
        i, j = index[o], index[d]
        km = haversine_km(towns.lat[i], towns.lon[i], towns.lat[j], towns.lon[j])
        value = km if cost == "km" else minutes_of_km(km, circuity, speed)
        rows.append((o, d, listed.get((o, d), 0.0), value, towns.population[i], towns.population[j]))
    origin, destination, flow, c, o_mass, d_mass = (np.asarray(col) for col in zip(*rows))
    flow = flow.astype(np.float64)
    for o in sorted(set(origin.tolist())):  # an origin of the regression needs a positive flow
        if not flow[origin == o].sum() > 0:
            raise UserError(
                f"--flows: origin {o!r} has no flow to another place; allowed: at least one positive flow per origin (or drop it)"
            )
    if np.any(c.astype(np.float64) <= 0):
        k = int(np.flatnonzero(c.astype(np.float64) <= 0)[0])
        raise UserError(
            f"--towns: {origin[k]!r} and {destination[k]!r} are at the same place; allowed: distinct coordinates"
        )
    return origin, destination, flow, c.astype(np.float64), o_mass.astype(np.float64), d_mass.astype(np.float64)


def calibrate_files(
    flows_path: str, towns, model: str, decay: str, cost: str, speed: float, circuity: float, pairs: str
):
    """The fit of ``model`` to the flows file (town_ids of ``towns``), and a line saying what it saw."""
    flows = read_flows(flows_path, towns)
    o, d, y, c, o_mass, d_mass = pairs_for_fit(flows, towns, cost, speed, circuity, pairs)
    fit = calibrate.fit(model, decay, y, o, d, c, o_mass, d_mass)
    seen = (
        f"{flows_path}: {int((y > 0).sum())} pairs with a flow of {y.size} fitted between "
        f"{len(set(o) | set(d))} places ({'the listed pairs only' if pairs == 'observed' else 'unlisted pairs count 0'}); "
        f"cost in {cost}"
    )
    return fit, seen


def read_places(path: str, zones) -> tuple:
    """The towns of ``--places`` (docs/model.md's columns) and, for each, the index of its zone
    in ``zones``: its ``zone`` column holds the town_id of the zone (a row of ``--towns``) it
    lies in. One line naming the file, row and value when a zone is missing or unknown."""
    import pandas as pd

    from agglo.engine.data.towns import load_table
    from agglo.engine.errors import UserError

    places = load_table(path)
    read = pd.read_parquet if path.lower().endswith(".parquet") else pd.read_csv
    frame = read(path, **({} if path.lower().endswith(".parquet") else {"dtype": {"zone": str}}))
    if "zone" not in frame.columns:
        raise UserError(
            f"{path}: missing column 'zone'; allowed: the town_id (of --towns) of the zone each town lies in"
        )
    index = {str(t): i for i, t in enumerate(zones.town_id)}
    zone = frame["zone"].astype(str).to_numpy()
    unknown = [k for k, z in enumerate(zone) if z not in index]
    if unknown:
        k = unknown[0]
        raise UserError(
            f"{path}: row {k + 2}: zone = {frame['zone'].iloc[k]!r} is not a town_id of {zones.source}; "
            "allowed: the town_id of the zone (a row of --towns) the town lies in"
        )
    return places, np.array([index[z] for z in zone], dtype=np.int64)


def place_weighted_files(flows_path: str, zones, places_path: str, decay: str, mode, near_km: float):
    """:func:`agglo.analysis.doubly.fit_doubly` through the zones' places
    (:class:`agglo.analysis.doubly.PlaceDeterrence`): every zone's workers and jobs (the flows'
    row and column sums, within-zone flows included) kept, beta and the time of a trip within a
    place fitted to every flow; a zone's people not in ``--places`` (its population less its
    places') stand at its own point. Returns the fit, its CPC, a line saying what it saw, and
    (the place deterrence, the zone flows) for :func:`place_curve`."""
    from agglo.analysis import doubly
    from agglo.engine.errors import UserError

    flows = read_flows(flows_path, zones)
    index = {str(t): i for i, t in enumerate(zones.town_id)}
    n = len(zones)
    table = np.zeros((n, n))
    np.add.at(table, (flows["origin"].map(index).to_numpy(), flows["destination"].map(index).to_numpy()), flows["flow"])
    if not np.trace(table) > 0:
        raise UserError(
            f"{flows_path}: no flow within a zone (origin = destination); the trip within a place is fitted from "
            "them; allowed: the flows of every zone, its own included"
        )
    places, unit = read_places(places_path, zones)
    rest = zones.population - np.bincount(unit, places.population, minlength=n)
    extra = np.flatnonzero(rest > 0)
    empty = np.flatnonzero((rest <= 0) & (np.bincount(unit, minlength=n) == 0))
    if empty.size:
        raise UserError(
            f"{places_path}: zone {str(zones.town_id[empty[0]])!r} has no town here and no people in --towns; "
            "allowed: a population > 0 for every zone, in its towns or in --towns"
        )
    det = doubly.PlaceDeterrence(
        {"lat": zones.lat, "lon": zones.lon},
        {"unit": np.concatenate([unit, extra]), "lat": np.concatenate([places.lat, zones.lat[extra]]),
         "lon": np.concatenate([places.lon, zones.lon[extra]]),
         "people": np.concatenate([places.population, rest[extra]])},
        decay, mode.circuity, mode.speed_kmh, mode.min_time_min, near_km,
    )  # fmt: skip
    workers, jobs = table.sum(axis=1), table.sum(axis=0)
    start = (2.0 if decay == "power" else 0.05, 10.0)
    fit = doubly.fit_doubly(
        table, None, workers, jobs, decay, True, xatol=1e-3, tol=1e-6, deterrence_of=det, start=start, fatol=1e-8
    )
    common = calibrate.cpc(table, doubly.balanced_flows(det(fit.beta, fit.self_cost), workers, jobs, tol=1e-6)[0])
    seen = (
        f"{flows_path}: {int((table > 0).sum())} zone pairs with a flow, {n} zones; {places_path}: {len(places)} towns, "
        f"{extra.size} zones' people outside them at the zone's point; {det.pair.size} pairs of places within "
        f"{near_km:g} km"
    )
    return fit, common, seen, (det, table)


def parse_edges(text: str) -> list[float]:
    """``--curve``'s bin edges: increasing minutes >= 0, comma-separated; the last bin open."""
    from agglo.engine.errors import UserError

    try:
        edges = [float(x) for x in str(text).split(",")]
    except ValueError:
        edges = []
    if len(edges) < 2 or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:])) or not np.isfinite(edges).all():
        raise UserError(
            f"--curve = {text!r}; allowed: two or more increasing minutes >= 0, comma-separated (e.g. 0,15,30,60)"
        )
    return edges + [np.inf]


def place_curve(fit, zones, edges: list[float]) -> str:
    """The deterrence measured between the zones' towns (:func:`agglo.analysis.doubly.fit_free`
    through the same places and margins as ``fit``), a value per bin of ``edges`` against a trip
    within a town, beside the power law of ``fit`` at the bin's middle, and its CPC (the power law's is in
    :func:`place_report`)."""
    from agglo.analysis import doubly

    det, table = zones
    workers, jobs = table.sum(axis=1), table.sum(axis=0)
    weights = det.bin_weights(edges)
    free = doubly.fit_free(table, weights, workers, jobs, tol=1e-7)
    common = calibrate.cpc(table, free.flows(weights, workers, jobs))
    lines = [
        f"measured deterrence between the towns (a value per bin, log f against a trip within a town; CPC {common:.4f},"
        f" {free.rounds} rounds) beside the power law above (log f at the bin's middle):",
        "minutes      measured   power law",
    ]
    power = fit.log_f_against_self(np.maximum(doubly.bin_middles(edges), 1e-9))
    for k in range(len(edges) - 1):
        measured = f"{free.log_f[k]:.3f}" if np.isfinite(free.log_f[k]) else "no trips"
        lines.append(f"{f'{edges[k]:g}-{edges[k + 1]:g}':<12} {measured:>9}   {power[k]:9.3f}")
    return "\n".join(lines)


def place_report(fit, common: float, mode: str) -> str:
    """What ``agglo calibrate --places`` prints: the fit and the docs/model.md keys it gives."""
    return (
        f"doubly-constrained gravity between the zones' towns, {fit.decay} deterrence, self term\n"
        f"beta {fit.beta:.6g}, a trip within a town {fit.self_cost:.6g} min; deviance {fit.deviance:.6g}, "
        f"CPC {common:.4f}, {fit.evaluations} balances\n"
        f"docs/model.md keys: {mode}.decay = {fit.decay}, {mode}.beta = {fit.beta:.6g}, "
        f"{mode}.self_time_min = {fit.self_cost:.6g}"
    )


def place_yaml(fit, common: float, mode: str, source: str) -> str:
    """An override file for ``agglo run --params`` from a ``--places`` fit."""
    return (
        f"# agglo calibrate --places: doubly-constrained gravity between the zones' towns, {fit.decay} deterrence on "
        f"minutes, fitted to {source}\n# deviance {fit.deviance:.6g}, CPC {common:.4f}\n"
        f"{mode}:\n  decay: {fit.decay}\n  beta: {float(fit.beta)!r}\n  self_time_min: {float(fit.self_cost)!r}\n"
    )
