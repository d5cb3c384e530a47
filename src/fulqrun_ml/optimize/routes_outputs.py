"""What `optimize routes` writes: the plan table (Parquet), the routes as GeoJSON lines with the visits as
points, a PNG map (every rep's week, and one rep-week in detail) and the JSON summary.

Why not `outputs.write_outputs`: that writer draws owners before and after; a route plan is ordered stops per
rep and day, so the map draws lines and the GeoJSON needs LineStrings. Every file is published atomically
(written to a temporary sibling, then renamed) so a failed run leaves no half-written artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from fulqrun_ml.optimize.outputs import publish
from fulqrun_ml.registry.locking import atomic_write_json, atomic_write_text

DAY_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")


def routes_geojson(plan: pd.DataFrame) -> dict:
    """One LineString per rep-day (home -> visits -> home) and one Point per visit or dropped candidate."""
    features = []
    stops = plan[plan["kind"].isin(["home_start", "visit", "home_end"])].sort_values(["rep_id", "day", "stop"])
    for (rep, day), route in stops.groupby(["rep_id", "day"], sort=False):
        line = [[float(lon), float(lat)] for lat, lon in route[["latitude", "longitude"]].itertuples(index=False)]
        properties = {"kind": "route", "rep_id": rep, "day": int(day), "visits": int((route["kind"] == "visit").sum()),
                      "km": float(route["km_from_previous"].sum())}  # fmt: skip
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": line},
                         "properties": properties})  # fmt: skip
    points = plan[plan["kind"].isin(["visit", "dropped", "unreachable"])]
    for row in points.itertuples(index=False):
        properties = {"kind": row.kind, "rep_id": row.rep_id, "company_id": str(row.company_id),
                      "value": float(row.value)}  # fmt: skip
        if row.kind == "visit":
            properties |= {"day": int(row.day), "stop": int(row.stop), "start_min": float(row.start_min)}
        features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [float(row.longitude),
                         float(row.latitude)]}, "properties": properties})  # fmt: skip
    return {"type": "FeatureCollection", "features": features}


def _draw(ax: plt.Axes, plan: pd.DataFrame, title: str) -> None:
    stops = plan[plan["kind"].isin(["home_start", "visit", "home_end"])].sort_values(["rep_id", "day", "stop"])
    for (_, day), route in stops.groupby(["rep_id", "day"], sort=False):
        ax.plot(route["longitude"], route["latitude"], "-o", ms=3, lw=1, color=DAY_COLOURS[(int(day) - 1) % 7])
    missed = plan[plan["kind"].isin(["dropped", "unreachable"])]
    ax.scatter(missed["longitude"], missed["latitude"], marker="x", c="grey", s=12, label="not visited")
    homes = plan[plan["kind"] == "home_start"]
    ax.scatter(homes["longitude"], homes["latitude"], marker="s", c="black", s=25, label="home", zorder=3)
    ax.set_title(title)
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")


def plot_routes(path: Path, plans: dict[str, pd.DataFrame], rep_id: str | None, title: str) -> None:
    """One panel per plan (e.g. OR-Tools, nearest neighbour) for `rep_id`'s week (lines coloured by day), or
    every rep's week when `rep_id` is None."""
    fig, axes = plt.subplots(1, len(plans), figsize=(7 * len(plans), 6), sharex=True, sharey=True, squeeze=False)
    for ax, (name, plan) in zip(axes[0], plans.items(), strict=True):
        shown = plan if rep_id is None else plan[plan["rep_id"] == rep_id]
        visits = shown[shown["kind"] == "visit"]
        _draw(ax, shown, f"{title}: {name} ({len(visits)} visits, {shown['km_from_previous'].sum():,.0f} km)")
    handles = [plt.Line2D([], [], color=c, label=f"day {d}") for d, c in enumerate(DAY_COLOURS[:5], start=1)]
    axes[0][0].legend(handles=handles, loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def busiest_rep(plan: pd.DataFrame) -> str | None:
    """The rep with the most visits (the rep-week the detailed map shows)."""
    visits = plan[plan["kind"] == "visit"]
    return str(visits["rep_id"].value_counts().idxmax()) if len(visits) else None


def write_route_outputs(out_dir: Path, plan: pd.DataFrame, baseline: pd.DataFrame, summary: dict) -> dict[str, str]:
    """routes.parquet (the OR-Tools plan; the baseline as routes_baseline.parquet), routes.geojson, routes.png
    (one rep-week, OR-Tools next to nearest neighbour) and routes_summary.json, each published atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "parquet": out_dir / "routes.parquet",
        "baseline_parquet": out_dir / "routes_baseline.parquet",
        "geojson": out_dir / "routes.geojson",
        "png": out_dir / "routes.png",
        "summary": out_dir / "routes_summary.json",
    }
    publish(paths["parquet"], lambda tmp: plan.to_parquet(tmp, index=False))
    publish(paths["baseline_parquet"], lambda tmp: baseline.to_parquet(tmp, index=False))
    atomic_write_text(paths["geojson"], json.dumps(routes_geojson(plan)))
    rep = busiest_rep(plan)
    publish(paths["png"], lambda tmp: plot_routes(tmp, {"OR-Tools": plan, "nearest neighbour": baseline}, rep,
                                                  f"rep {str(rep)[:8]} week"))  # fmt: skip
    written = {k: str(v) for k, v in paths.items()}
    atomic_write_json(paths["summary"], summary | {"outputs": written, "map_rep": rep})
    return written
