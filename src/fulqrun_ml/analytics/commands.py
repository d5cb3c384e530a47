"""`fulqrun-ml analytics pipeline|competitive|forecast-pipeline|benchmark`: pipeline, market and peer analytics.

    fulqrun-ml analytics pipeline    [--crm DIR | --postgres [--schema S]] [--quota FILE] [--as-of DATE]
                                     [--config pipeline] [--set key=value ...] [--out FILE]
    fulqrun-ml analytics competitive [--crm DIR | --postgres [--schema S]] [--config competitive] [--out FILE]
    fulqrun-ml analytics forecast-pipeline [--crm DIR | --postgres] [--as-of DATE] [--set horizon=3 ...] [--out FILE]
    fulqrun-ml analytics benchmark   [--crm DIR | --postgres] [--org ORG_ID] [--as-of DATE]
                                     [--set dp.epsilon=1 segment=industry ...] [--out FILE]

The source is an export directory (Parquet/CSV, `DirectorySource`), the CRM's PostgreSQL (`PostgresSource`; the
DSN comes from FULQRUN_CRM_DSN, never from the command line, so no password sits in a shell history), or by
default the simulator with the config's `simulate` block (`organizations: N` stacks N simulated organisations).
Every source is validated against the contract first.
`--quota FILE` (CSV/Parquet: user_id, period_start, quota) replaces the run-rate quota. The JSON report is
written atomically (complete or absent) to --out, or printed. Errors are FulqrunMLError subclasses naming the
file, field or row; `fulqrun-ml` prints them and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from fulqrun_ml.analytics.benchmark import benchmark_command, check_benchmark_config
from fulqrun_ml.analytics.market_report import market_report
from fulqrun_ml.analytics.pipeline_forecast_report import forecast_pipeline_command
from fulqrun_ml.analytics.pipeline_report import pipeline_report
from fulqrun_ml.data.contract import CRMTables, stack_organizations
from fulqrun_ml.data.simulator_competition import CompetitionScenario
from fulqrun_ml.data.simulator_slippage import SlippageStory
from fulqrun_ml.data.source_files import read_table_file
from fulqrun_ml.data.sources import DirectorySource, PostgresSource, SimulatorSource
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.locking import atomic_write_json


def load_config(name_or_path: str, overrides: list[str]) -> dict[str, Any]:
    """configs/analytics/<name>.yaml (or a path) with `key=value` overrides, as a plain dict."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / "analytics" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FulqrunMLError(f"--config: no analytics config {name_or_path!r} (looked for {path})")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise FulqrunMLError(f"--set: overrides are key=value, got {bad}")
    merged = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return OmegaConf.to_container(merged, resolve=True)  # type: ignore[return-value]


def simulated_tables(settings: dict[str, Any]) -> CRMTables:
    """The simulator's CRM, validated like any source; `competition` / `amount_noise_sd` pick the stories.

    `organizations: N` (default 1) stacks N simulated organisations (seeds seed, seed+1, ...) into one CRM, as a
    multi-tenant export holds them: cross-organisation analytics (`benchmark`) need more than one.
    """
    kwargs = dict(settings)
    competition = CompetitionScenario() if kwargs.pop("competition", False) else None
    slippage = SlippageStory(amount_noise_sd=float(kwargs.pop("amount_noise_sd", 0.0)))
    count = kwargs.pop("organizations", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise FulqrunMLError(f"simulate.organizations: must be a positive integer, got {count!r}")
    if count == 1:
        return SimulatorSource(competition=competition, slippage=slippage, **kwargs)().tables
    seed = int(kwargs.pop("seed", 7))
    parts = [
        SimulatorSource(
            competition=competition,
            slippage=slippage,
            seed=seed + i,
            organization_name=f"Simulated Org {i + 1}",
            **kwargs,
        )().tables
        for i in range(count)
    ]
    return stack_organizations(parts)


def load_tables(args: argparse.Namespace, cfg: dict[str, Any]) -> CRMTables:
    if args.crm:
        return DirectorySource(args.crm)()
    if args.postgres:
        return PostgresSource(schema=args.schema)()
    return simulated_tables(cfg.get("simulate", {}))


def read_quota_file(path: str) -> pd.DataFrame:
    file = Path(path)
    if not file.is_file():
        raise FulqrunMLError(f"--quota: no file {file}")
    return read_table_file(file, "quota")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml analytics", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("pipeline", "coverage, velocity, conversion, aging, slippage and the health score"),
        ("competitive", "competitor win rates, loss reasons, market change points, STL, territories"),
        ("forecast-pipeline", "bookings per period from the open pipeline: commit (p10) to best case (p90)"),
        ("benchmark", "per-segment win rates pooled over organisations, DP-noised (dp.epsilon) peer benchmark"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        source = cmd.add_mutually_exclusive_group()
        source.add_argument("--crm", help="an export directory (Parquet or CSV tables)")
        source.add_argument("--postgres", action="store_true", help="the CRM database at $FULQRUN_CRM_DSN")
        cmd.add_argument("--schema", default="public", help="PostgreSQL schema (with --postgres)")
        cmd.add_argument("--config", default=name, help="configs/analytics/<name>.yaml or a path")
        cmd.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
        cmd.add_argument("--out", help="write the JSON report here (atomically) instead of printing it")
        if name in ("pipeline", "forecast-pipeline", "benchmark"):
            cmd.add_argument("--as-of", help="the instant to analyse (default: the extraction time)")
        if name == "pipeline":
            cmd.add_argument("--quota", help="quota table (user_id, period_start, quota), CSV or Parquet")
        if name == "benchmark":
            cmd.add_argument("--org", help="the caller's organization_id: its exact rates next to the peers' (others)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cfg = load_config(args.config, args.set)
    if args.command == "benchmark":
        check_benchmark_config(cfg)  # a bad epsilon or segment list fails before the CRM is read
    tables = load_tables(args, cfg)
    as_of = None
    if getattr(args, "as_of", None):
        try:
            as_of = pd.Timestamp(args.as_of)
        except ValueError as err:
            raise FulqrunMLError(f"--as-of: not a date: {args.as_of!r}") from err
    if args.command == "benchmark":
        report = benchmark_command(tables, cfg, as_of, args.org)
    elif args.command == "forecast-pipeline":
        report = forecast_pipeline_command(tables, cfg, as_of)
    elif args.command == "pipeline":
        quota = read_quota_file(args.quota) if args.quota else None
        report = pipeline_report(
            tables, cfg["freq"], cfg["lookback_days"], cfg["min_train_periods"], quota_table=quota, as_of=as_of
        )
    else:
        report = market_report(
            tables,
            cfg["regions"],
            cfg["burn_in_days"],
            cfg["min_segment_months"],
            cfg["stl_period"],
            cfg.get("change_point_penalty", "bic"),
        )
    if args.out:
        atomic_write_json(Path(args.out), report)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(report, indent=2, default=str))
    return 0
