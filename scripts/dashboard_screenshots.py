"""Screenshots of every dashboard page with a real Chromium (apt `chromium`, Playwright), into reports/screenshots/.

    .venv/bin/python scripts/dashboard_screenshots.py --url http://127.0.0.1:8050 [--out reports/screenshots]
    .venv/bin/python scripts/dashboard_screenshots.py --serve --models-dir models   # starts Triton + the app itself

Either point it at a running app (`fulqrun-ml dashboard`, ideally with --triton so live pages fill), or give
--serve: it serves the registry's deal-win model (production, else latest) with a real Triton (the model and
its reasons endpoint) and runs the app in this process on a free port. Each page is loaded,
given time to finish its callbacks, checked for browser console errors (listed, exit 1 if any), and saved
as <out>/<page>.png at a laptop width (1366 px; the Deals page with the largest deal's probability history
picked); the Deals page also at a tablet width (820 px).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

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
    parser.add_argument("--serve", action="store_true", help="start Triton and the app here")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--recommendations", type=Path, default=None)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.serve:
        return shoot(args.url, args.out)
    return serve_and_shoot(args)


def serve_and_shoot(args: argparse.Namespace) -> int:
    import tempfile
    import threading

    from fulqrun_ml.dashboard.app import create_app
    from fulqrun_ml.dashboard.context import build_context
    from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
    from fulqrun_ml.serving.server import TritonServer

    work = Path(tempfile.mkdtemp(prefix="dashboard-shots-"))
    ctx = build_context(args.models_dir, Path("reports"), work, views_file=work / "views.json",
                        recommendations=args.recommendations)  # fmt: skip
    if ctx.deal_model is None:
        raise SystemExit(f"no deal_win model under {args.models_dir}: run `make run` first")
    builder = TritonRepositoryBuilder(work / "repo")
    builder.add(ctx.deal_model, config_for_version(ctx.deal_model))
    builder.add(ctx.deal_model, config_for_version(ctx.deal_model, reasons_top_k=3))
    with TritonServer(work / "repo", explicit_models=["deal_win", "deal_win_reasons"]) as triton:
        ctx.triton_url = triton.http_url
        server = make_server("127.0.0.1", 0, create_app(ctx).server, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            return shoot(f"http://127.0.0.1:{server.server_port}", args.out, scenario=True)
        finally:
            server.shutdown()


def shoot(url: str, out: Path, scenario: bool = False) -> int:
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for width, suffix, pages in ((1366, "", PAGES), (820, "-tablet", [x for x in PAGES if x.path == "/deals"])):
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            page.on("console", lambda m, pg=page: errors.append(f"{pg.url}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e, pg=page: errors.append(f"{pg.url}: {e}"))
            for spec in pages:
                page.goto(url.rstrip("/") + spec.path)
                wait_rendered(page)
                if scenario and spec.path == "/scenario":  # show an answer: one field changed, scored by Triton
                    page.fill("#whatif-activities_total", "60")
                    page.get_by_role("button", name="Score with Triton").click()
                    page.wait_for_selector("#whatif-probability", timeout=60_000)
                if spec.path == "/deals" and not suffix:  # show a probability history: the largest deal's
                    page.locator("[id*='history_deal']").first.click()
                    page.get_by_role("option").first.click()
                    page.wait_for_selector("#chart-probability-history .js-plotly-plot", timeout=120_000)
                    wait_rendered(page)
                name = "overview" if spec.path == "/" else spec.path.strip("/")
                page.screenshot(path=str(out / f"{name}{suffix}.png"), full_page=True)
                print(f"{spec.path}: {out / (name + suffix)}.png")
            context.close()
        browser.close()
    for error in errors:
        print(f"console error: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
