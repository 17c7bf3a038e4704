#!/usr/bin/env python3
"""A screenshot of the page of ``python -m nfinpaint.serve`` after a fill, for the docs.

    python scripts/serve_screenshot.py data/corpus/photos/test/Kite.png -o docs/figures/serve.png \\
        --stroke 680,215,705,215,60 --stroke 668,238,670,258,30 --stroke 345,5,652,194,10

Starts the app (the shipped generator, CPU) on a free loopback port, opens the picture in
headless Chromium, drags the brush along each ``--stroke x0,y0,x1,y1,diameter`` (picture
pixels), presses Fill and saves the browser window. Needs the serve extra, selenium, Chromium
and chromedriver (the same as ``tests/test_serve_browser.py``, whose helpers it uses).
"""
import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from _browser import chromium, find_chromium, running_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("picture", type=Path)
    parser.add_argument("-o", "--out", type=Path, default=REPO / "docs" / "figures" / "serve.png")
    parser.add_argument("--stroke", action="append", required=True, help="x0,y0,x1,y1,diameter in picture pixels")
    parser.add_argument("--window", default="1280,860", help="browser window width,height")
    args = parser.parse_args()

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from nfinpaint import Inpainter
    from nfinpaint.serve import create_app, warm_up
    from test_serve_browser import _draw, _fill

    browser, driver, why = find_chromium()
    if browser is None or driver is None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    strokes = []
    for text in args.stroke:
        x0, y0, x1, y1, size = (float(v) for v in text.split(","))
        strokes.append(((x0, y0), (x1, y1), int(size)))
    width, height = (int(v) for v in args.window.split(","))
    downloads = args.out.parent
    inpainter = Inpainter(device="cpu")
    warm_up(inpainter)   # as the command does
    with running_server(create_app(inpainter)) as url, \
            chromium(browser, driver, downloads, size=(width, height)) as web:
        web.get(url)
        web.find_element(By.ID, "file").send_keys(str(args.picture.resolve()))
        WebDriverWait(web, 30).until(lambda w: w.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     == "ready")
        for stroke in strokes:
            _draw(web, stroke)
        timing, _ = _fill(web)
        web.execute_script("document.getElementById('cursor').hidden = true;")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        web.save_screenshot(str(args.out))
    print(f"{args.out}: filled in {timing['ms'] / 1000:.2f} s (the fill itself {timing['serverSeconds']:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
