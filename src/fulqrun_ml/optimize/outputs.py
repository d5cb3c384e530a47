"""What every optimisation writes: the plan as Parquet, the same as GeoJSON, a before/after PNG map and a JSON
summary, so a planner can load the table, a GIS tool the map layer, and a reviewer the picture and numbers."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fulqrun_ml.registry.locking import atomic_write_json, atomic_write_text


def publish(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it over `path` (complete or absent)."""
    tmp = path.with_name(f".{path.stem}.tmp-{uuid.uuid4().hex}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _feature(lon: float, lat: float, properties: dict) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}, "properties": properties}


def _plain(value: object) -> object:
    """numpy scalars to Python (JSON has no int64)."""
    return value.item() if isinstance(value, np.generic) else value


def write_geojson(path: Path, plan: pd.DataFrame, reps: pd.DataFrame, before: str, after: str) -> None:
    """Accounts as points (their old and new owner as properties) and rep home bases as points."""
    keep = [c for c in ("company_id", "potential", "workload", before, after, "moved") if c in plan.columns]
    features = [
        _feature(
            float(lon), float(lat), {k: _plain(v) for k, v in zip(keep, values, strict=True)} | {"kind": "account"}
        )
        for lon, lat, *values in plan[["longitude", "latitude", *keep]].itertuples(index=False)
    ]
    features += [
        _feature(float(lon), float(lat), {"kind": "rep_home", "rep_id": rep, "capacity_hours": float(cap)})
        for rep, lat, lon, cap in reps[["rep_id", "home_latitude", "home_longitude", "capacity_hours"]].itertuples(
            index=False
        )
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))


def plot_plan(path: Path, plan: pd.DataFrame, reps: pd.DataFrame, before: str, after: str, title: str) -> None:
    """Side-by-side maps of the accounts coloured by owner before and after (rep homes as black crosses)."""
    codes = pd.Index(reps["rep_id"])
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), sharex=True, sharey=True)
    for ax, column, label in ((axes[0], before, "before"), (axes[1], after, "after")):
        ax.scatter(plan["longitude"], plan["latitude"], c=codes.get_indexer(plan[column]) % 20, cmap="tab20",
                   s=4, linewidths=0)  # fmt: skip
        ax.scatter(reps["home_longitude"], reps["home_latitude"], marker="x", c="black", s=18)
        ax.set_title(f"{title}: {label}")
        ax.set_xlabel("longitude")
    axes[0].set_ylabel("latitude")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(
    out_dir: Path, name: str, plan: pd.DataFrame, reps: pd.DataFrame, before: str, after: str, summary: dict
) -> dict[str, str]:
    """`<name>.parquet`, `<name>.geojson`, `<name>.png` and `<name>_summary.json` under out_dir; returns paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "parquet": out_dir / f"{name}.parquet",
        "geojson": out_dir / f"{name}.geojson",
        "png": out_dir / f"{name}.png",
        "summary": out_dir / f"{name}_summary.json",
    }
    plan.to_parquet(paths["parquet"], index=False)
    write_geojson(paths["geojson"], plan, reps, before, after)
    plot_plan(paths["png"], plan, reps, before, after, name)
    written = {k: str(v) for k, v in paths.items()}
    atomic_write_json(paths["summary"], summary | {"outputs": written})
    return written


def plot_coverage(path: Path, accounts: pd.DataFrame, territories: pd.DataFrame) -> None:
    """Left: accounts coloured by potential at stake (white space ringed). Right: each territory's expected
    bookings with its interval against its quota, lowest chance of reaching quota first."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    dots = axes[0].scatter(accounts["longitude"], accounts["latitude"], c=accounts["potential_at_stake"], s=6,
                           cmap="viridis", linewidths=0)  # fmt: skip
    white = accounts[accounts["white_space"]]
    axes[0].scatter(white["longitude"], white["latitude"], s=22, facecolors="none", edgecolors="red", linewidths=0.6,
                    label="white space")  # fmt: skip
    fig.colorbar(dots, ax=axes[0], label="potential at stake ($/year)")
    axes[0].set_title("white space: high potential, little touch")
    axes[0].legend(loc="lower left", fontsize=8)
    y = np.arange(len(territories))
    mid = territories["expected_bookings"].to_numpy()
    err = [mid - territories["bookings_low"].to_numpy(), territories["bookings_high"].to_numpy() - mid]
    axes[1].errorbar(mid, y, xerr=err, fmt="o", ms=3, label="expected bookings (interval)")
    axes[1].scatter(territories["quota"], y, marker="|", c="red", s=80, label="quota")
    axes[1].set_yticks(y, [f"{str(r)[:8]} p={p:.2f}" for r, p in zip(territories["rep_id"],
                                                                      territories["p_reach_quota"], strict=True)],
                       fontsize=6)  # fmt: skip
    axes[1].invert_yaxis()
    axes[1].set_xlabel("open pipeline bookings ($)")
    axes[1].set_title("territories by P(reach quota), lowest first")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_coverage_outputs(
    out_dir: Path,
    accounts: pd.DataFrame,
    segments: pd.DataFrame,
    territories: pd.DataFrame,
    reps: pd.DataFrame,
    summary: dict,
) -> dict[str, str]:
    """coverage.parquet (accounts, ranked), coverage_segments.parquet, coverage_territories.parquet,
    coverage.geojson, coverage.png and coverage_summary.json, each published atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"coverage{suffix}" for name, suffix in (
        ("parquet", ".parquet"), ("segments", "_segments.parquet"), ("territories", "_territories.parquet"),
        ("geojson", ".geojson"), ("png", ".png"), ("summary", "_summary.json"))}  # fmt: skip
    for name, frame in (("parquet", accounts), ("segments", segments), ("territories", territories)):
        publish(paths[name], lambda tmp, frame=frame: frame.to_parquet(tmp, index=False))
    keep = ["company_id", "current_rep", "potential", "touches", "touch_gap", "potential_at_stake", "white_space",
            "rank"]  # fmt: skip
    features = [
        _feature(
            float(lon), float(lat), {k: _plain(v) for k, v in zip(keep, values, strict=True)} | {"kind": "account"}
        )
        for lon, lat, *values in accounts[["longitude", "latitude", *keep]].itertuples(index=False)
    ]
    features += [
        _feature(float(lon), float(lat), {"kind": "rep_home", "rep_id": rep})
        for rep, lat, lon in reps[["rep_id", "home_latitude", "home_longitude"]].itertuples(index=False)
    ]
    atomic_write_text(paths["geojson"], json.dumps({"type": "FeatureCollection", "features": features}))
    publish(paths["png"], lambda tmp: plot_coverage(tmp, accounts, territories))
    written = {k: str(v) for k, v in paths.items()}
    atomic_write_json(paths["summary"], summary | {"outputs": written})
    return written
