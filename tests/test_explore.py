"""``agglo explore`` (issue #15): a self-contained page, checked offline and in headless Chromium.

The page's data is decoded in Python and compared with the cube; the browser test (skipped,
with the reason, where Chromium, its driver or selenium is missing; ``.ci/run`` installs them)
opens the page from disk, checks the console, moves a slider with the keyboard as a user
would, reads the drawn cores back from the page's data sources and compares them with the
cube's, and checks the screenshot is not blank.
"""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest
import xarray as xr

from agglo.views.explore import build_page
from benchmarks import headless
from tests.conftest import SMALL
from tests.test_failures import agglo, one_line

GRID = [*SMALL, "data.n=300", "commute.cap_min=15,30,60", "freight.cap_min=60,120"]


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    from agglo.cli import main

    path = tmp_path_factory.mktemp("explore") / "grid.zarr"
    assert main(["run", *GRID, f"store.path={path}", "--quiet"]) == 0
    assert main(["analyze", str(path)]) == 0
    return path


def _unpack(text: str, dtype) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=np.dtype(dtype).newbyteorder("<"))


def test_page_data_is_the_cube(cube):
    _, held, _, p = build_page(str(cube))
    ds = xr.open_zarr(cube)
    dims = ["commute.cap_min", "freight.cap_min"]
    assert p["dims"] == dims and p["shape"] == [3, 2] and p["n_scenarios"] == 6 and "6 scenarios" in held
    order = ("mode", "town", *dims)
    core = _unpack(p["core"], np.int32).reshape(2, p["n_towns"], 6)
    assert np.array_equal(core, ds.core.transpose(*order).values.reshape(2, -1, 6))
    reach = _unpack(p["reach"], np.int32).reshape(2, p["n_towns"], 6)
    assert np.array_equal(reach, ds.n_reachable.transpose(*order).values.reshape(2, -1, 6))
    share = _unpack(p["share"], np.uint8).reshape(2, p["n_towns"], 6).astype(float)
    want = ds.share.transpose(*order).values.reshape(2, -1, 6)
    assert np.array_equal(share == 255, np.isnan(want))
    assert np.all(np.abs(share[share < 255] / 250 - want[~np.isnan(want)]) <= 0.002 + 1e-9)
    cov = np.array(p["coverage"], dtype=float).reshape(6, 2)
    assert np.array_equal(cov, ds.coverage.transpose(*dims, "mode").values.reshape(6, 2), equal_nan=True)
    assert p["stability"] is not None, "the cube was analysed: the page has a stability layer"
    stab = xr.open_zarr(cube, group="analysis/stability", consolidated=False)
    assert np.allclose(p["stability"]["freight"]["p_member"], stab.p_member.sel(mode="freight").values, atol=1e-4)


def test_a_cube_too_large_for_the_budget_is_subsampled_and_says_so(cube):
    _, held, _, p = build_page(str(cube), max_mb=1e-6)
    assert p["shape"] == [1, 1] and p["n_scenarios"] == 1
    assert "subsampled" in held and "commute.cap_min: 1 of 3" in held
    core = _unpack(p["core"], np.int32).reshape(2, p["n_towns"], 1)
    ds = xr.open_zarr(cube)
    first = ds.core.isel({"commute.cap_min": 0, "freight.cap_min": 0}).transpose("mode", "town").values
    assert np.array_equal(core[:, :, 0], first)


def test_explore_command_writes_one_offline_file(cube, tmp_path):
    out = tmp_path / "page.html"
    rc, stdout, err = agglo("explore", cube, "--out", out)
    assert rc == 0, err
    assert "scenarios" in stdout and "MB" in stdout
    html = out.read_text(encoding="utf-8")
    assert "<script src=" not in html and "<link" not in html, "every resource is inline"
    assert "aggloExplore" in html and not list(tmp_path.glob("*.partial"))
    assert 0.1e6 < len(html) < 10e6
    # `agglo run --figures DIR` (what `make run` calls) writes the page beside the figures.
    figures = tmp_path / "figures"
    rc, stdout, err = agglo("run", *GRID, f"store.path={cube}", "--quiet", "--figures", figures)
    assert rc == 0, err
    assert (figures / "explore.html").stat().st_size > 0.1e6 and "explore: " in stdout


def test_bad_input_exits_2(cube, tmp_path):
    rc, _, err = agglo("explore", tmp_path / "none.zarr", "--out", tmp_path / "p.html")
    assert rc == 2
    one_line(err, "no such store")
    rc, _, err = agglo("explore", cube, "--out", tmp_path / "p.html", "--select", "freight.speed=3")
    assert rc == 2
    one_line(err, "freight.speed", "not a dimension")
    rc, _, err = agglo("explore", cube, "--out", tmp_path, "--select")
    assert rc == 2
    one_line(err, "is a folder")
    rc, _, err = agglo("explore", cube, "--out", tmp_path / "p.html", "--max-mb", "0")
    assert rc == 2
    one_line(err, "--max-mb")
    assert not (tmp_path / "p.html").exists()


# --- in a real browser ---------------------------------------------------------------------


def _browser():
    why = headless.missing()
    if why:
        pytest.skip(why)
    return headless.start()


def _wait(browser, script: str, limit_s: float = 30.0):
    try:
        return headless.wait(browser, script, limit_s)
    except TimeoutError as exc:
        pytest.fail(str(exc))


def _drawn(browser, mode: str) -> list:
    """The cores the page's data source for ``mode`` holds now (what the map draws)."""
    return browser.execute_script(f"return Array.from(Bokeh.documents[0].get_model_by_name('towns_{mode}').data.core)")


@pytest.mark.browser
def test_page_in_headless_chromium(cube, tmp_path):
    from selenium.webdriver.common.keys import Keys

    out = tmp_path / "page.html"
    rc, _, err = agglo("explore", cube, "--out", out, "--select", "commute.cap_min=15", "freight.cap_min=60")
    assert rc == 0, err
    ds = xr.open_zarr(cube)
    browser = _browser()
    try:
        browser.get(out.as_uri())
        _wait(browser, headless.READY)
        assert not headless.errors(browser)
        for mode in ("commute", "freight"):
            want = ds.core.isel({"commute.cap_min": 0, "freight.cap_min": 0}).sel(mode=mode).values
            assert _drawn(browser, mode) == want.tolist()
        # Move the commuting-cap slider one step, with the keyboard on its handle.
        handles = browser.execute_script(headless.FIND_ALL, ".noUi-handle")
        assert len(handles) == 2, "one slider per swept dimension"
        handles[0].click()
        handles[0].send_keys(Keys.ARROW_RIGHT)
        _wait(browser, "return window.aggloExplore.scenario === 2")  # (cap 30, cap 60): flat index 1 * 2 + 0
        value = browser.execute_script("return Bokeh.documents[0].get_model_by_name('slider_commute.cap_min').value")
        assert value == 1
        chosen = ds.core.isel({"commute.cap_min": 1, "freight.cap_min": 0})
        first = ds.core.isel({"commute.cap_min": 0, "freight.cap_min": 0})
        assert not np.array_equal(chosen.values, first.values), (
            "the two scenarios must differ for the test to mean anything"
        )
        for mode in ("commute", "freight"):
            assert _drawn(browser, mode) == chosen.sel(mode=mode).values.tolist()
        heading = browser.execute_script("return Bokeh.documents[0].get_model_by_name('heading').text")
        assert "commute.cap_min = 30" in heading and "freight.cap_min = 60" in heading
        redraw_ms = browser.execute_script("return window.aggloExplore.redraw_ms")
        print(f"redraw after a slider step: {redraw_ms:.1f} ms")
        # The stability layer recolours without changing the drawn cores.
        buttons = browser.execute_script(headless.FIND_ALL, ".bk-btn")
        [b for b in buttons if b.text == "P(member)"][0].click()
        _wait(browser, "return Bokeh.documents[0].get_model_by_name('layer').active === 2")
        colours = browser.execute_script(
            "return Bokeh.documents[0].get_model_by_name('towns_freight').data.color.filter(c => c.startsWith('rgb')).length"
        )
        assert colours > 0
        png = browser.get_screenshot_as_png()
        assert not headless.errors(browser)
    finally:
        browser.quit()
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    colours = np.unique((image.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 50 and image.std() > 0.05, "the screenshot is blank"


def test_outlines_are_clipped_to_the_view_and_thinned(tmp_path):
    """The boundary reader on a shapefile written here: a line inside the view is kept (in
    Web Mercator, thinned, ends kept), one outside it is dropped."""
    shapefile = pytest.importorskip("shapefile", reason="pyshp comes with the maps extra")
    from agglo.views.outlines import _clip, mercator, outlines

    inside = [[(-97.0 + 0.001 * k, 17.0 + 0.0005 * k) for k in range(1001)]]
    outside = [[(10.0, 50.0), (11.0, 51.0)]]
    with shapefile.Writer(str(tmp_path / "lines"), shapeType=shapefile.POLYLINE) as w:
        w.field("name", "C")
        for name, parts in (("inside", inside), ("outside", outside)):
            w.line(parts)
            w.record(name)
    x0, y0 = mercator(np.array([-98.0]), np.array([16.0]))
    x1, y1 = mercator(np.array([-95.0]), np.array([19.0]))
    view = ((float(x0[0]), float(x1[0])), (float(y0[0]), float(y1[0])))
    with shapefile.Reader(str(tmp_path / "lines")) as reader:
        xs, ys = _clip(reader.iterShapes(), *view)
    assert len(xs) == 1, "the line outside the view is dropped"
    ex, ey = mercator(np.array([-97.0, -96.0]), np.array([17.0, 17.5]))
    assert abs(xs[0][0] - ex[0]) <= 1 and abs(ys[0][-1] - ey[1]) <= 1, "ends kept, in Web Mercator metres"
    assert 2 < len(xs[0]) < 1001, "thinned to about a pixel"
    layers = outlines(*view)
    assert set(layers) == {"countries", "regions"}
    if "not installed" not in layers["countries"][2]:
        assert len(layers["countries"][0]) > 0, "Mexico's outline crosses this view"
