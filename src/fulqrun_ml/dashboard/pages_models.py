"""Model pages: Model health, Experiments, and the report-backed Next actions/pricing and Territories.

Why these read the registry and reports/ directly: those are the platform's records of what was measured
(each number has a version, a report file and the command that wrote it). Nothing is recomputed here, so the
dashboard cannot disagree with the reports; a missing record becomes an empty state naming its command.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import html

from fulqrun_ml.dashboard.components import PALETTE, Page, empty, kpis, money, pct
from fulqrun_ml.dashboard.context import TASKS, DashboardContext, Missing
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.registry.store import get_version, list_versions


def flatten(data: Any, prefix: str = "", depth: int = 3) -> list[dict[str, Any]]:
    """Scalar leaves of a report as (key, value) rows: a generic view of reports with their own shapes."""
    rows: list[dict[str, Any]] = []
    if isinstance(data, dict) and depth > 0:
        for key, value in data.items():
            rows += flatten(value, f"{prefix}.{key}" if prefix else str(key), depth - 1)
    elif isinstance(data, int | float | str | bool) and not isinstance(data, dict):
        rows.append({"key": prefix, "value": data})
    return rows


def _versions(ctx: DashboardContext) -> pd.DataFrame:
    rows = []
    for task in TASKS:
        for number in list_versions(ctx.models_dir, task):
            version = get_version(ctx.models_dir, task, number)
            try:
                metrics = json.loads((version.path / "metrics.json").read_text()).get("model", {})
            except (FileNotFoundError, json.JSONDecodeError):
                metrics = {}
            rows.append(
                {
                    "task": task,
                    "version": number,
                    "published_at": pd.Timestamp(version.metadata.get("published_at")),
                    "auc": metrics.get("auc"),
                    "ece": metrics.get("ece"),
                    "n_holdout": metrics.get("n"),
                }
            )
    return pd.DataFrame(rows)


def model_health(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    versions = _versions(ctx)
    if versions.empty:
        page.children.append(empty(Missing(f"no model in {ctx.models_dir}", "fulqrun-ml run")))
    else:
        fig = go.Figure()
        for i, (task, part) in enumerate(versions.groupby("task")):
            colour = PALETTE[i % len(PALETTE)]
            fig.add_scatter(x=part["published_at"], y=part["auc"], mode="lines+markers", name=f"{task} AUC",
                            line={"color": colour})  # fmt: skip
            fig.add_scatter(x=part["published_at"], y=part["ece"], mode="lines+markers", name=f"{task} ECE",
                            line={"color": colour, "dash": "dot"}, yaxis="y2")  # fmt: skip
        fig.update_layout(yaxis={"title": "AUC (holdout)"}, yaxis2={"title": "ECE", "overlaying": "y", "side": "right"})
        page.add_chart("versions", "Holdout AUC and ECE of every published version", fig, versions)
    deal = ctx.production("deal_win")
    if isinstance(deal, Missing):
        page.children.append(empty(deal))
    else:
        fairness = deal.metadata.get("fairness") or {}
        path = deal.path / "fairness.json"
        if path.is_file():
            fairness = json.loads(path.read_text())
        rows = [
            {"attribute": attribute, "group": group, **{k: v for k, v in stats.items() if not isinstance(v, dict)}}
            for attribute, entry in (fairness.get("attributes") or {}).items()
            for group, stats in (entry.get("groups") or {}).items()
        ]
        if rows:
            frame = pd.DataFrame(rows)
            frame["label"] = frame["attribute"] + ": " + frame["group"].astype(str)
            fig = go.Figure()
            fig.add_bar(x=frame["label"], y=frame["mean_predicted"], name="mean predicted", marker_color=PALETTE[0])
            fig.add_bar(x=frame["label"], y=frame["observed_rate"], name="observed win rate", marker_color=PALETTE[1])
            fig.update_layout(barmode="group")
            page.add_chart("fairness", f"Fairness by group: deal_win v{deal.version} (holdout)", fig, frame)
    drift = ctx.report("bench_monitoring.json", "fulqrun-ml monitor simulate")
    if isinstance(drift, Missing):
        page.children.append(empty(drift))
    else:
        detected = drift.get("goals", {}).get("detected", {})
        frame = pd.DataFrame([{"scenario": k, **v} for k, v in detected.items()])
        page.add_table("drift", "Drift detection by scenario (reports/bench_monitoring.json)", frame)
    board = ctx.report("leaderboard.json", "fulqrun-ml bench models")
    if isinstance(board, Missing):
        page.children.append(empty(board))
    else:
        rows = [
            {"task": task, "model": row.get("name"), "kind": row.get("kind"), "metric": section.get("metric"),
             "value": row.get(section.get("metric", "auc")), "ece": row.get("ece")}
            for task, section in board.get("sections", {}).items() for row in section.get("rows", [])
        ]  # fmt: skip
        page.add_table("leaderboard", "Leaderboard (reports/leaderboard.json)", pd.DataFrame(rows))
    return page


def experiments(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    runs = []
    for wandb_dir in sorted(Path(ctx.logs_dir).glob("*/runs/*/wandb")):
        run_dir = wandb_dir.parent
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text()).get("model", {})
        except (FileNotFoundError, json.JSONDecodeError):
            metrics = {}
        offline = sorted(wandb_dir.glob("offline-run-*"))
        runs.append(
            {"task": run_dir.parent.parent.name, "run": run_dir.name,
             "wandb_run": offline[-1].name.rsplit("-", 1)[-1] if offline else None,
             "auc": metrics.get("auc"), "ece": metrics.get("ece"), "log_loss": metrics.get("log_loss")}
        )  # fmt: skip
    if runs:
        page.add_table("runs", f"W&B offline runs under {ctx.logs_dir} (upload: make sync)", pd.DataFrame(runs))
    else:
        page.children.append(empty(Missing(f"no W&B offline runs under {ctx.logs_dir}", "fulqrun-ml train")))
    ab = ctx.report("bench_ab.json", "python scripts/bench_ab.py")
    if isinstance(ab, Missing):
        page.children.append(empty(ab))
    else:
        page.children.append(
            kpis(
                [
                    ("A/A false-positive rate", pct(float(ab.get("aa_false_positive_rate", float("nan")))), "ab-fpr"),
                    ("Power at the MDE", pct(float(ab.get("power_at_mde", float("nan")))), "ab-power"),
                    (
                        "Peeking fixed test FPR",
                        pct(float(ab.get("naive_peeking_false_positive_rate", "nan"))),
                        "ab-peek",
                    ),
                ]
            )
        )
        page.add_table(
            "ab",
            "A/B testing: sequential-test record (reports/bench_ab.json)",
            pd.DataFrame(flatten(ab.get("goals", {}))),
        )
    return page


def actions(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    if ctx.recommendations is None or not Path(ctx.recommendations).is_file():
        page.children.append(
            empty(Missing("no next-best-action file", "fulqrun-ml recommend --k 5 --out actions.parquet "
                          "and start the dashboard with --recommendations actions.parquet"))
        )  # fmt: skip
    else:
        ranked = pd.read_parquet(ctx.recommendations)
        ranked["opportunity_id"] = ranked["opportunity_id"].astype(str)
        in_scope = set(ctx.warehouse.open_deals(filters)["opportunity_id"])  # org scoping: only visible deals
        ranked = ranked[ranked["opportunity_id"].isin(in_scope)]
        top = ranked[ranked["rank"] == 1] if "rank" in ranked else ranked
        page.children.append(
            kpis([("Deals with a recommendation", f"{top['opportunity_id'].nunique():,}", "nba-deals"),
                  ("Expected revenue from top actions", money(float(top.get("uplift_expected_revenue",
                   pd.Series(dtype=float)).sum())), "nba-revenue")])
        )  # fmt: skip
        page.add_table("next-actions", "Next best actions (uplift in win probability, 95% band)", ranked)
    pricing = ctx.report("bench_recommendation_insights.json", "python scripts/bench_recommendation_insights.py")
    if isinstance(pricing, Missing):
        page.children.append(empty(pricing))
    else:
        page.add_table(
            "pricing", "Pricing, coaching and strategy record", pd.DataFrame(flatten(pricing.get("headline", {})))
        )
    return page


def _image(path: Path, alt: str) -> html.Img | None:
    if not path.is_file():
        return None
    encoded = base64.b64encode(path.read_bytes()).decode()
    return html.Img(src=f"data:image/png;base64,{encoded}", alt=alt, className="report-image")


def territories(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    report = ctx.report(
        "bench_territory.json", "python scripts/bench_territory.py (or fulqrun-ml optimize territories)"
    )
    if isinstance(report, Missing):
        page.children.append(empty(report))
        return page
    page.add_table("territory-balance", "Balance before and after (reports/bench_territory.json)",
                   pd.DataFrame(flatten(report.get("balance", {}))))  # fmt: skip
    for name, alt in (("bench_territory_map.png", "Territory map before and after"),
                      ("bench_territory_assignment.png", "Rep-account assignment revenue")):  # fmt: skip
        image = _image(ctx.reports_dir / name, alt)
        if image is not None:
            page.children.append(html.Figure([image, html.Figcaption(alt)], className="card"))
    return page
