"""The explorer's page, as a user makes and opens it, against issue #15's bounds.

Each case runs a cube (``agglo run``, synchronous, reused if this script made it before in the
same folder), then times the whole ``agglo explore`` process, and opens the page in headless
Chromium: seconds from loading the file to the first drawn scenario, and the time from a
slider step (a key press on its handle) to the maps painted again, median of 8 steps. Printed
beside the bounds: page size (Oaxaca: a few MB, taken as 5 MB; national: 50 MB) and a redraw
well under a second (taken as 1 000 ms).

    python benchmarks/bench_explore.py                      # oaxaca and mexico (~2 minutes)
    python benchmarks/bench_explore.py --cases oaxaca --keep /tmp/agglo-bench

Cases:
  oaxaca  every GeoNames town of Oaxaca, 2 000 scenarios: commute.cap_min=range(20,120,2.5)
          x freight.cap_min=range(100,500,8), analysed (the stability layer is on the page)
  mexico  all of Mexico, the 512-scenario cap sweep of issue #12
  synthetic  300 synthetic towns, 3 scenarios (the smoke test)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import headless  # noqa: E402

CASES = {
    "synthetic": {  # the smoke test's case (tests/test_benchmarks.py)
        "run": ["experiment=synthetic", "data.n=300", "executor.kind=synchronous", "commute.cap_min=15,30,60"],
        "analyze": False,
        "size_mb": 5.0,
    },
    "oaxaca": {
        "run": ["executor.kind=synchronous", "commute.cap_min=range(20,120,2.5)", "freight.cap_min=range(100,500,8)"],
        "analyze": True,
        "size_mb": 5.0,
    },
    "mexico": {
        "run": [
            "data.source=geonames",
            "data.country=MX",
            "data.admin1=null",
            "cores.ids=[]",
            "executor.kind=synchronous",
            "commute.beta=range(1.0,3.0,0.25)",
            "commute.cap_min=30,40,50,60,70,80,90,100",
            "freight.cap_min=120,150,180,210,240,270,300,330",
        ],
        "analyze": False,
        "size_mb": 50.0,
    },
}
REDRAW_MS = 1000.0


def _agglo(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "agglo.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(name: str, folder: Path, steps: int = 8) -> dict:
    from selenium.webdriver.common.keys import Keys

    case = CASES[name]
    cube, page = folder / f"{name}.zarr", folder / f"{name}.html"
    if not cube.exists():
        _agglo("run", *case["run"], f"store.path={cube}", "--quiet")
        if case["analyze"]:
            _agglo("analyze", str(cube))
    write_s = _agglo("explore", str(cube), "--out", str(page))
    browser = headless.start()
    try:
        start = time.perf_counter()
        browser.get(page.as_uri())
        headless.wait(browser, headless.READY, 120)
        ready_s = time.perf_counter() - start
        handle = browser.execute_script(headless.FIND_ALL, ".noUi-handle")[0]
        handle.click()
        painted = []
        for step in range(steps):
            handle.send_keys(Keys.ARROW_LEFT if step % 2 else Keys.ARROW_RIGHT)
            painted.append(headless.wait(browser, "return window.aggloExplore.painted_ms", 60))
        errors = headless.errors(browser)
    finally:
        browser.quit()
    return {
        "size_mb": page.stat().st_size / 1e6,
        "write_s": write_s,
        "ready_s": ready_s,
        "redraw_ms": statistics.median(painted),
        "errors": len(errors),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="oaxaca,mexico")
    parser.add_argument("--keep", help="folder for the cubes and pages (reused); default: a temporary one")
    args = parser.parse_args(argv)
    why = headless.missing()
    if why:
        print(f"bench_explore: {why}", file=sys.stderr)
        return 2
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="agglo-bench-explore-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    for name in args.cases.split(","):
        r = measure(name, folder)
        budget = CASES[name]["size_mb"]
        print(
            f"{name}: page {r['size_mb']:.1f} MB ({r['size_mb'] / budget:.2f} of {budget:g} MB), "
            f"written in {r['write_s']:.1f} s (whole process), ready {r['ready_s']:.1f} s after opening, "
            f"slider step painted in {r['redraw_ms']:.0f} ms ({r['redraw_ms'] / REDRAW_MS:.2f} of {REDRAW_MS:g} ms), "
            f"console errors {r['errors']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
