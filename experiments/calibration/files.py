"""The US county flows as ``agglo calibrate --places`` reads them, one command from the
repository root:

    .venv/bin/python experiments/calibration/files.py      # writes results/us_calibration/
    .venv/bin/agglo calibrate --flows results/us_calibration/flows.csv \
        --towns results/us_calibration/counties.csv --places results/us_calibration/places.csv

``counties.csv``: the zones (a town table: each county's internal point and population);
``places.csv``: experiments/cbsa's places (every GeoNames place of the US with 500+ people)
with the county each lies in (``zone``); ``flows.csv``: every observed county-to-county flow of
the ACS 2009-2013 table between those counties, within-county flows included.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from experiments.calibration.run import load  # noqa: E402
from experiments.cbsa import places as P  # noqa: E402


def main() -> int:
    counties, flows, _ = load()
    out = ROOT / "results" / "us_calibration"
    out.mkdir(parents=True, exist_ok=True)
    zone_id = counties["GEOID"].astype(np.int64).to_numpy()
    pd.DataFrame(
        {"town_id": zone_id, "name": counties["Name"], "lat": counties["Latitude"], "lon": counties["Longitude"],
         "population": counties["Population"].astype(float), "region": counties["State"]}
    ).to_csv(out / "counties.csv", index=False)  # fmt: skip
    places = P.build_places(counties, P.delineation(ROOT))
    places = places[places["town_id"] < P.REST_ID]  # the remainders: agglo calibrate makes them itself
    places = places[places["county"].isin(set(counties["GEOID"]))]
    places.assign(zone=places["county"].astype(np.int64)).drop(columns=["county", "core"]).to_csv(
        out / "places.csv", index=False
    )
    o, d = np.nonzero(flows)
    pd.DataFrame({"origin": zone_id[o], "destination": zone_id[d], "flow": flows[o, d]}).to_csv(
        out / "flows.csv", index=False
    )
    print(f"{out}: {len(counties)} counties, {len(places)} places, {o.size} flows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
