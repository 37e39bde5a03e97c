"""Open a report in a real headless Chromium (Playwright driving the system browser through `executable_path`;
no browser download) and say what rendered: script errors, every image's size, the runs the summary table
lists, and any request that tried to leave the file. Used by the report's test and for the README screenshot:

    python -m prunekit.report.browser report.html shot.png [--selector '#bench-0'] [--height 1400] [--width 1280]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ["chromium-headless-shell", "chromium", "chromium-browser", "google-chrome",
              "/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium"]


def find_chromium() -> str | None:
    """$PRUNEKIT_CHROMIUM, else the first Chromium on PATH or in Debian's place."""
    for name in [os.environ.get("PRUNEKIT_CHROMIUM", ""), *CANDIDATES]:
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


@dataclass
class PageCheck:
    errors: list[str] = field(default_factory=list)  # uncaught exceptions and console errors
    images: list[dict[str, Any]] = field(default_factory=list)  # alt, natural and rendered sizes
    svgs: list[dict[str, Any]] = field(default_factory=list)
    run_names: list[str] = field(default_factory=list)  # data-run of the summary table's rows
    external_requests: list[str] = field(default_factory=list)  # anything not file: or data:


IMAGES_JS = """() => Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete,
    natural_width: i.naturalWidth, natural_height: i.naturalHeight,
    width: i.getBoundingClientRect().width, height: i.getBoundingClientRect().height}))"""
SVGS_JS = """() => Array.from(document.querySelectorAll('svg')).map(s => ({
    width: s.getBoundingClientRect().width, height: s.getBoundingClientRect().height}))"""
RUNS_JS = """() => Array.from(document.querySelectorAll('#summary-table tr[data-run]')).map(r => r.dataset.run)"""


def _screenshot(page: Any, path: str | Path, selector: str | None, width: int, clip_height: int | None) -> None:
    """The whole page, or `clip_height` pixels of it from the top of `selector` (or of the page)."""
    top = 0.0
    if selector:
        box = page.locator(selector).first.bounding_box()
        top = box["y"] + page.evaluate("() => window.scrollY") if box else 0.0
    if clip_height is None and not selector:
        page.screenshot(path=str(path), full_page=True)
        return
    total = page.evaluate("() => document.documentElement.scrollHeight")
    height = min(clip_height or total, total - top)
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": top, "width": width, "height": height})


def check_page(html_path: str | Path, screenshot: str | Path | None = None, *, selector: str | None = None,
               width: int = 1280, height: int = 900, clip_height: int | None = None,
               executable: str | None = None) -> PageCheck:
    """Load the page, wait for every image, collect a PageCheck and optionally a PNG screenshot (the whole page,
    or `clip_height` pixels from the element `selector`)."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found (apt-get install chromium-headless-shell, or set PRUNEKIT_CHROMIUM)")
    result = PageCheck()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda exc: result.errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: result.errors.append(f"console: {msg.text}") if msg.type == "error"
                    else None)

            def route(r: Any) -> None:
                url = r.request.url
                if url.startswith(("file:", "data:")):
                    r.continue_()
                else:
                    result.external_requests.append(url)
                    r.abort()

            page.route("**/*", route)
            page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => Array.from(document.images).every(i => i.complete)")
            result.images = page.evaluate(IMAGES_JS)
            result.svgs = page.evaluate(SVGS_JS)
            result.run_names = page.evaluate(RUNS_JS)
            if screenshot is not None:
                _screenshot(page, screenshot, selector, width, clip_height)
        finally:
            browser.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="screenshot a prunekit report in headless Chromium")
    parser.add_argument("html")
    parser.add_argument("png")
    parser.add_argument("--selector", help="CSS selector of the element the capture starts at (default: the top)")
    parser.add_argument("--height", type=int, help="pixels to capture (default: the rest of the page)")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args(argv)
    check = check_page(args.html, args.png, selector=args.selector, width=args.width, clip_height=args.height)
    bad = [i for i in check.images if not i["natural_width"]]
    print(f"{args.png}: {len(check.images)} images ({len(bad)} broken), {len(check.errors)} script errors, "
          f"{len(check.run_names)} runs in the table")
    return 1 if bad or check.errors else 0


if __name__ == "__main__":
    sys.exit(main())
