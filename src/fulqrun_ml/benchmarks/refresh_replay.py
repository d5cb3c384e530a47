"""Replay weeks of daily refresh on the simulator: does the job promote good candidates, keep bad ones out, and
roll back a production model that regresses?

Each simulated week the CRM extract grows by 7 days (`data.source.days`, the same seeded CRM observed later)
and `monitoring.refresh.refresh` runs on it. At `--bad-week` an operator promotes a broken model by hand (trained
for one epoch at a learning rate of 1e-9: a real, useless network), the regression the job must catch: the next
refresh has to roll it back. Baseline: "never refresh" (the week-0 model scored on every week's holdout).

    python scripts/bench_refresh.py [--weeks 8] [--opportunities 3000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from fulqrun_ml.benchmarks.workload import configure_logging
from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.export.package import export_run
from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.refresh import RefreshGates, refresh, score_version
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.training.train import train

REPORT = Path("reports/bench_refresh.json")
NAME = "deal_win"


def data_overrides(opportunities: int, days: int) -> list[str]:
    return [
        f"data.source.n_opportunities={opportunities}",
        f"data.source.n_companies={max(opportunities // 5, 50)}",
        f"data.source.days={days}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]


def plant_bad_production(models_dir: Path, work_dir: Path, overrides: list[str]) -> int:
    """Publish and promote a useless network (what a careless manual promote could ship)."""
    cfg = compose_config(
        "train",
        [
            "task=deal_win",
            f"paths.output_dir={work_dir / 'bad'}",
            f"paths.models_dir={models_dir}",
            "task.module.optimizer.lr=1e-9",
            "trainer.max_epochs=1",
            *overrides,
        ],
    )
    version, _ = export_run(Path(train(cfg)["run_dir"]), models_dir, name=NAME)
    promote(models_dir, NAME, version.version, actor="operator")
    return version.version


def replay(
    work_dir: Path,
    weeks: int = 8,
    opportunities: int = 3000,
    start_days: int = 600,
    bad_week: int | None = 4,
    warm_epochs: int = 3,
    first_epochs: int = 8,
    gates: RefreshGates | None = None,
) -> list[dict[str, Any]]:
    """Week 0 bootstraps production; weeks 1..weeks refresh it. Returns one row per week."""
    models_dir = work_dir / "models"
    rows: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []

    def alert(kind: str, detail: dict[str, Any]) -> None:
        alerts.append({"kind": kind, **detail})

    first_model = None
    for week in range(weeks + 1):
        overrides = data_overrides(opportunities, start_days + 7 * week)
        planted = None
        if bad_week is not None and week == bad_week:
            planted = plant_bad_production(models_dir, work_dir / f"week{week}", overrides)
        result = refresh(
            models_dir,
            NAME,
            "deal_win",
            work_dir / f"week{week}",
            overrides=[*overrides, f"trainer.max_epochs={first_epochs}"],
            warm_overrides=(f"trainer.max_epochs={warm_epochs}",),
            gates=gates,
            alert=alert,
        )
        row = {"week": week, "planted_bad_version": planted, **result.to_dict(), "alerts": list(alerts)}
        alerts.clear()
        if first_model is None:
            first_model = result.production_after
        elif result.holdout_path:
            holdout = read_snapshot(result.holdout_path)
            row["never_refreshed"] = score_version(get_version(models_dir, NAME, first_model), holdout)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--opportunities", type=int, default=3000)
    parser.add_argument("--bad-week", type=int, default=4)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    configure_logging()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fulqrun-refresh-") as tmp:
        rows = replay(Path(tmp), args.weeks, args.opportunities, bad_week=args.bad_week)
    report = {
        "benchmark": "refresh_replay",
        "machine": machine_info(),
        "settings": {
            "weeks": args.weeks,
            "opportunities": args.opportunities,
            "bad_week": args.bad_week,
            "gates": RefreshGates().__dict__,
        },
        "seconds": round(time.perf_counter() - started, 1),
        "weeks": rows,
        "decisions": [r["decision"] for r in rows],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, default=str))
    tmp_out.replace(args.out)
    print(json.dumps(report["decisions"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
