"""Build ny_counties.csv (a towns table: one row per county) from NY_counties_2011.geojson.

Centroid of each county: the area-weighted centroid of its polygons (shoelace formula on
lon/lat degrees, largest ring per polygon, holes ignored) — at county scale the planar
approximation moves a centroid by well under a kilometre. Run from the repository root:

    python tests/data/ny_commuting/make_counties.py ../shared/data/ny_commuting/NY_counties_2011.geojson
"""

import csv
import json
import sys
from pathlib import Path


def ring_centroid(ring):
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1]):
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    a /= 2.0
    return abs(a), cx / (6.0 * a), cy / (6.0 * a)


def main(src: str) -> None:
    features = json.loads(Path(src).read_text())["features"]
    out = Path(__file__).with_name("ny_counties.csv")
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["town_id", "name", "lat", "lon", "population", "region"])
        for f in sorted(features, key=lambda f: f["properties"]["tile_id"]):
            geom = f["geometry"]
            polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
            parts = [ring_centroid([tuple(p) for p in poly[0]]) for poly in polys]
            area = sum(p[0] for p in parts)
            lon = sum(p[0] * p[1] for p in parts) / area
            lat = sum(p[0] * p[2] for p in parts) / area
            fips = f["properties"]["tile_id"]
            w.writerow([fips, f"county {fips}", f"{lat:.6f}", f"{lon:.6f}", f["properties"]["population"], "36"])
    print(out)


if __name__ == "__main__":
    main(sys.argv[1])
