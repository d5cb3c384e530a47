"""What every optimisation writes: the plan as Parquet, the same as GeoJSON, a before/after PNG map and a JSON
summary, so a planner can load the table, a GIS tool the map layer, and a reviewer the picture and numbers."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fulqrun_ml.registry.locking import atomic_write_json


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
