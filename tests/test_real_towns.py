"""Kernels against the NumPy reference on every town of real regions of different shape."""

import pytest

from tests.real_towns import mexico_geonames, oaxaca_geonames, oaxaca_inegi_frame, russia
from tests.strategies import DEFAULT_COMMUTE, DEFAULT_FREIGHT, compare, kernels_one, reference_one


def _check(towns, commute=DEFAULT_COMMUTE, freight=DEFAULT_FREIGHT, borders="open", core_min=100000.0):
    from tests.strategies import make_config

    cfg = make_config(commute, freight, borders, core_min)
    kernel = kernels_one(towns, cfg)
    ties = {}
    for m, mode in enumerate(("commute", "freight")):
        ref = reference_one(towns, cfg, mode, block=256)
        ties[mode] = compare(kernel, ref, m, cfg.mode(mode))
        assert (kernel["core"][m] >= 0).any()  # the case is not empty
    return ties


def test_oaxaca_geonames_default_model():
    ties = _check(oaxaca_geonames())
    assert all(t["core_differs_at_ties"] == 0 for t in ties.values())


def test_oaxaca_exponential_no_self_term():
    commute = dict(DEFAULT_COMMUTE, decay="exponential", beta=0.05, self_time_min=None)
    freight = dict(DEFAULT_FREIGHT, decay="exponential", beta=0.02, self_time_min=None, threshold=0.3)
    _check(oaxaca_geonames(), commute, freight)


def test_russia_national_closed_borders():
    _check(russia(), borders="closed", core_min=250000.0)


def test_oaxaca_inegi_table_municipal_borders(tmp_path):
    path = tmp_path / "oaxaca.csv"
    oaxaca_inegi_frame().to_csv(path, index=False)
    from agglo.engine.data.towns import load_table

    towns = load_table(str(path))
    assert len(towns) == 629
    _check(towns, borders="closed", core_min=20000.0)
    _check(towns, core_min=20000.0)


@pytest.mark.slow  # about a minute on 2 cores: run by .ci/run after the default tests (make test-all)
def test_mexico_whole_country():
    """Every GeoNames town of Mexico (16 000+), both modes, default caps."""
    towns = mexico_geonames()
    assert len(towns) > 15000
    ties = _check(towns)
    print(ties)
