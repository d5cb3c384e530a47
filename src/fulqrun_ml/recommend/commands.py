"""`fulqrun-ml recommend`: next best actions for every open deal, in bulk; `pricing|coaching|strategy` insights.

    fulqrun-ml recommend [simulator | --crm DIR] [--k 5] [--out FILE] [--models-dir models] [--version latest]
    fulqrun-ml recommend pricing|coaching|strategy ...      (recommend/insight_commands.py)

Deals open at the CRM's extraction time are described by their state (data/simulator_actions.deal_states: rows
at or before that time only) and scored by the registered `nba_uplift` effect model (configs/recommend/
default.yaml). On the simulator without a registered model the effect model is fitted in process on a simulated
logged history first (and the output says so); a real CRM without one is an error, since its history has no gap,
slot or content columns to learn from yet. --out writes Parquet, CSV or JSON lines (atomically); without it the
top actions are printed. Errors are FulqrunMLError subclasses naming the field; `fulqrun-ml` exits 2 on them.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_actions import deal_states
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError, RegistryError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.recommend.sdk import EffectModel, load_registered
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.registry.store import list_versions

INSIGHTS = ("pricing", "coaching", "strategy")
FORMATS = (".parquet", ".csv", ".jsonl")


def fit_in_process(settings: dict) -> EffectModel:
    """The effect model fitted on a simulated logged history (the benchmark's loop), for a registry without one."""
    from fulqrun_ml.models.mlp import MLP
    from fulqrun_ml.recommend.datamodule import UpliftDataModule
    from fulqrun_ml.recommend.effect_model import fit_members, predict_uplift

    datamodule = UpliftDataModule(crm=settings["crm"], world=settings["world"], seed=int(settings["world"]["seed"]))
    datamodule.setup()
    dims = (len(datamodule.spec.spec.numeric), datamodule.spec.cardinalities)
    hidden = tuple(settings["hidden_dims"])
    ensemble = fit_members(
        datamodule,
        lambda: MLP(*dims, hidden, 0.1, 8, datamodule.n_outputs),
        int(settings["members"]),
        int(settings["world"]["seed"]),
        max_epochs=int(settings["max_epochs"]),
    )
    return EffectModel(
        lambda states: predict_uplift(ensemble, datamodule.spec, states),
        datamodule.spec,
        datamodule.nuisance.propensity_models,
        "fitted in process on the simulator (no registered model)",
    )


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Parquet, CSV or JSON lines by suffix, written to a temporary file and renamed (never half-written)."""
    if out.suffix not in FORMATS:
        raise FieldValidationError("--out", f"use one of {FORMATS}, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        tmp = out.with_name(f".{out.name}.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(out)
    elif out.suffix == ".csv":
        atomic_write_text(out, frame.to_csv(index=False))
    else:
        atomic_write_text(out, frame.to_json(orient="records", lines=True))


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fulqrun-ml recommend", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", choices=["simulator"], help="score the simulated CRM (the default)")
    parser.add_argument("--crm", type=Path, help="a CRM export directory (Parquet/CSV tables)")
    parser.add_argument("--k", type=int, default=5, help="actions per deal")
    parser.add_argument("--out", type=Path, help="output file: .parquet, .csv or .jsonl")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--version", default=None, help="registered version (default: configs/recommend)")
    parser.add_argument("--config", type=Path, default=CONFIG_DIR / "recommend" / "default.yaml")
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on bad options; turn it into our error (exit 2, no trace)
        if exit_.code == 0:
            raise
        raise FulqrunMLError(f"fulqrun-ml recommend: bad arguments {argv}; see --help") from None


def main(argv: list[str]) -> int:
    if argv and argv[0] in INSIGHTS:
        return int(importlib.import_module("fulqrun_ml.recommend.insight_commands").main(argv) or 0)
    args = parse(argv)
    if args.k < 1:
        raise FieldValidationError("--k", f"expected a positive integer, got {args.k}")
    if args.crm is not None and args.source == "simulator":
        raise FieldValidationError("--crm", "give either --crm DIR or simulator, not both")
    if not Path(args.config).is_file():
        raise FieldValidationError("--config", f"no such file {args.config}")
    settings = OmegaConf.to_container(OmegaConf.load(args.config), resolve=True)
    name, version = settings["model"]["name"], args.version or str(settings["model"]["version"])
    tables = DirectorySource(args.crm).load() if args.crm is not None else simulate_crm(**settings["simulate"]).tables
    states = deal_states(tables, tables.extracted_at)
    if states.empty:
        raise FulqrunMLError(f"no deal is open at the extraction time {tables.extracted_at}")
    if list_versions(args.models_dir, name):
        model = load_registered(args.models_dir, name, version)
    elif args.crm is None:
        model = fit_in_process(settings["fit_when_unregistered"])
    else:
        raise RegistryError(
            f"no registered '{name}' under {args.models_dir}: run `fulqrun-ml train task=nba_uplift` and "
            "`fulqrun-ml export --run-dir <run>` first"
        )
    ranked = model.recommend(states, args.k)
    if args.out is not None:
        write_table(ranked, args.out)
    print(f"{len(states)} open deals, top {args.k} actions each, model: {model.source}")
    shown = ranked[ranked["rank"] == 1].head(5)
    for row in shown.itertuples():
        print(
            f"  {row.opportunity_id[:8]}: {row.type_channel}, {row.gap}, {row.slot}, {row.content}: "
            f"{100 * row.uplift_win_probability:+.1f} pts [{100 * row.uplift_low:+.1f}, {100 * row.uplift_high:+.1f}]"
            f", {row.uplift_expected_revenue:+,.0f} expected revenue; {row.reason}"
        )
    if args.out is not None:
        print(f"wrote {len(ranked)} rows to {args.out}")
    return 0
