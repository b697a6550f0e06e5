"""Real town tables for the tests, in docs/model.md's columns."""

from pathlib import Path

import pandas as pd

from agglo.engine.data.towns import Towns, from_frame, inegi_localities, load_geonames

DATA = Path(__file__).parent / "data"


def russia() -> Towns:
    raw = pd.read_csv(DATA / "ru_towns" / "towns.csv")
    frame = pd.DataFrame(
        {
            "town_id": raw.index.to_numpy() + 1,  # okato/oktmo repeat for a few towns
            "name": raw["city"],
            "lat": raw["lat"],
            "lon": raw["lon"],
            "population": raw["population"] * 1000.0,
            "region": raw["region_iso_code"],
        }
    )
    return from_frame(frame, "ru_towns")


def oaxaca_inegi_frame() -> pd.DataFrame:
    return inegi_localities(str(DATA / "oaxaca" / "oaxaca_localidades_1000plus_2020.csv"))


def oaxaca_geonames() -> Towns:
    return load_geonames("MX", ["20"], 500)


def mexico_geonames() -> Towns:
    return load_geonames("MX", None, 500)
