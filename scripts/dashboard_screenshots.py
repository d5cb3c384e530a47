"""Screenshots of every dashboard page with a real Chromium (apt `chromium`, Playwright), into reports/screenshots/.

    .venv/bin/python scripts/dashboard_screenshots.py --url http://127.0.0.1:8050 [--out reports/screenshots]

Start the app first (`fulqrun-ml dashboard`, ideally with --triton so live pages fill). Each page is loaded,
given time to finish its callbacks, checked for browser console errors (listed, exit 1 if any), and saved
as <out>/<page>.png at a laptop width (1366 px); the Deals page also at a tablet width (820 px).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from fulqrun_ml.dashboard.layout import PAGES

CHROMIUM = "/usr/bin/chromium"


def wait_rendered(page, timeout_ms: int = 60_000) -> None:
    """Dash marks pending callbacks on <body>/elements; wait until the page content has children and settles."""
    page.wait_for_selector("#page-content > *", timeout=timeout_ms)
    page.wait_for_function("() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=timeout_ms)
    page.wait_for_timeout(500)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--out", type=Path, default=Path("reports/screenshots"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for width, suffix, pages in ((1366, "", PAGES), (820, "-tablet", [x for x in PAGES if x.path == "/deals"])):
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            page.on("console", lambda m, pg=page: errors.append(f"{pg.url}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e, pg=page: errors.append(f"{pg.url}: {e}"))
            for spec in pages:
                page.goto(args.url.rstrip("/") + spec.path)
                wait_rendered(page)
                name = "overview" if spec.path == "/" else spec.path.strip("/")
                page.screenshot(path=str(args.out / f"{name}{suffix}.png"), full_page=True)
                print(f"{spec.path}: {args.out / (name + suffix)}.png")
            context.close()
        browser.close()
    for error in errors:
        print(f"console error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
