"""Places coded into a region far from them are reported (issue #30: GeoNames codes Sulęcin,
in Lubuskie, into Małopolska)."""

import numpy as np
import pandas as pd

from agglo.engine.data.towns import from_frame, load_geonames, region_outliers


def _towns(extra_lat: float, extra_region: str):
    rng = np.random.default_rng(3)
    n = 40
    frame = pd.DataFrame(
        {
            "town_id": np.arange(n + 1) + 1,
            "name": [f"t{k}" for k in range(n + 1)],
            "lat": np.r_[50.0 + rng.uniform(0, 1, n // 2), 52.0 + rng.uniform(0, 1, n // 2), extra_lat],
            "lon": np.r_[20.0 + rng.uniform(0, 1, n // 2), 16.0 + rng.uniform(0, 1, n // 2), 16.5],
            "population": 1000.0,
            "region": ["A"] * (n // 2) + ["B"] * (n // 2) + [extra_region],
        }
    )
    return from_frame(frame, "two regions")


def test_a_place_coded_into_a_far_region_is_reported_and_a_well_coded_one_is_not():
    far = region_outliers(_towns(52.5, "A"))  # among B's places, coded A (about 300 km from A)
    assert [i for i, _ in far] == [40] and far[0][1] > 200
    assert region_outliers(_towns(52.5, "B")) == []


def test_sulecin_in_a_malopolska_run():
    towns = load_geonames("PL", ["77"], 500)
    names = [towns.name[i] for i, _ in region_outliers(towns)]
    assert names == ["Sulęcin"]
    assert region_outliers(load_geonames("MX", ["20"], 500)) == []


def test_run_reports_it_in_one_line(tmp_path, run_cli):
    code, _, err = run_cli(
        "run",
        "data.country=PL",
        "data.admin1=77",
        "executor.kind=synchronous",
        "commute.cap_min=30",
        "freight.cap_min=60",
        f"store.path={tmp_path / 'pl.zarr'}",
    )
    assert code == 0, err
    line = [x for x in err.splitlines() if "far from every other place" in x]
    assert len(line) == 1 and "Sulęcin (region 77, 381 km" in line[0]
