"""`fulqrun-ml models list|show|promote|rollback|diff`: the registry for people, as tables.

`models_main(argv)` parses its own arguments, so the CLI only forwards `argv`. Promote and rollback call an
optional `on_change(change)` after a real change (not after a no-op): the CLI passes one that makes a live
Triton serve `change.to_version`, because the registry must not import the serving layer. Errors print as
`error: ...` and return 2.

`promote` runs the fairness gate of `configs/governance/default.yaml` (or `--governance-config`): a version whose
recorded group gaps exceed the maxima is refused, naming the group and gap, unless `--override-fairness --reason
"..."` is given; the override, its reason, who and when go into the audit log with the promotion.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.alias_state import ALIASES, read_alias_state
from fulqrun_ml.registry.aliases import AliasChange, promote, rollback
from fulqrun_ml.registry.catalog import list_model_versions, list_models, show_version
from fulqrun_ml.registry.deletion import delete_version
from fulqrun_ml.registry.diff import Change, diff
from fulqrun_ml.registry.fairness_gate import load_governance_config
from fulqrun_ml.registry.key_rotation import (
    encrypt_version,
    rotate_model_keys,
    rotate_run_snapshots,
    seal_run_snapshots,
)
from fulqrun_ml.registry.store import list_versions

OnChange = Callable[[AliasChange], None]


def default_models_dir() -> str:
    """Same default as `configs/paths/default.yaml`: $FULQRUN_ROOT/models, else ./models."""
    return str(Path(os.environ.get("FULQRUN_ROOT", ".")) / "models")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml models", description=__doc__)
    parser.add_argument("--models-dir", default=default_models_dir(), help="registry root (default: %(default)s)")
    sub = parser.add_subparsers(dest="action", required=True)
    p_list = sub.add_parser("list", help="models, or the versions of one model")
    p_list.add_argument("name", nargs="?")
    p_show = sub.add_parser("show", help="one version: aliases, metrics, lineage, audit (and model card)")
    p_show.add_argument("name")
    p_show.add_argument("version", nargs="?", default="latest", help="number, 'latest' or an alias")
    p_show.add_argument("--card", action="store_true", help="print the model card")
    p_show.add_argument("--json", action="store_true", help="print everything as JSON")
    p_promote = sub.add_parser("promote", help="point an alias (default production) at a version")
    p_promote.add_argument("name")
    p_promote.add_argument("version", help="number, 'latest' or an alias (e.g. candidate)")
    p_promote.add_argument("--alias", choices=ALIASES, default="production")
    p_promote.add_argument("--actor", help="who is responsible (default: $USER)")
    p_promote.add_argument(
        "--governance-config", help="fairness gate settings: a YAML path or a name in configs/governance/"
    )
    p_promote.add_argument(
        "--override-fairness", action="store_true", help="promote despite a failing fairness gate (needs --reason)"
    )
    p_promote.add_argument("--reason", help="why the fairness gate is overridden (written to the audit log)")
    p_rollback = sub.add_parser("rollback", help="production returns to the previous production version")
    p_rollback.add_argument("name")
    p_rollback.add_argument("--actor", help="who is responsible (default: $USER)")
    p_delete = sub.add_parser("delete", help="remove a version no alias serves (admin when roles are on; audited)")
    p_delete.add_argument("name")
    p_delete.add_argument("version", type=int)
    p_delete.add_argument("--actor", help="who is responsible (default: $USER)")
    p_delete.add_argument("--reason", default="", help="why (written to the audit log)")
    p_encrypt = sub.add_parser("encrypt", help="encrypt a version's model files at rest (admin; audited)")
    p_encrypt.add_argument("name")
    p_encrypt.add_argument("version", help="number, 'latest' or an alias")
    p_encrypt.add_argument("--actor", help="who is responsible (default: $USER)")
    p_rotate = sub.add_parser("rotate-keys", help="re-encrypt encrypted versions with the current key (admin; audited)")
    p_rotate.add_argument("name", nargs="?", help="one model (default: all)")
    p_rotate.add_argument("--actor", help="who is responsible (default: $USER)")
    p_rotate.add_argument(
        "--runs-dir", help="also re-encrypt the sealed run snapshots under this folder (default: logs/ next to models)"
    )
    p_seal = sub.add_parser("seal-snapshots", help="seal past runs' plain snapshots at rest")
    p_seal.add_argument("--runs-dir", help="runs folder (default: logs/ next to models)")
    p_diff = sub.add_parser("diff", help="metrics, config and lineage differences between two versions")
    p_diff.add_argument("name")
    p_diff.add_argument("a")
    p_diff.add_argument("b")
    return parser


def models_main(argv: list[str], on_change: OnChange | None = None) -> int:
    """Run one `models` subcommand; returns the exit status (0 ok, 2 error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage message
        return int(exc.code or 0)
    # soft_wrap: a sentence naming a path stays on one line (rich folded it at the width, so a copied path broke)
    console = Console(width=max(Console().width, 120), soft_wrap=True)
    models_dir = Path(args.models_dir)
    try:
        if args.action == "list":
            _list(console, models_dir, args.name)
        elif args.action == "show":
            _show(console, models_dir, args.name, args.version, card=args.card, as_json=args.json)
        elif args.action == "promote":
            _report_change(console, _promote(models_dir, args), on_change)
        elif args.action == "rollback":
            _report_change(console, rollback(models_dir, args.name, args.actor), on_change)
        elif args.action == "delete":
            record = delete_version(models_dir, args.name, args.version, args.actor, args.reason)
            console.print(f"deleted {args.name} v{args.version} ({record['actor']}, {record['at']})")
        elif args.action == "diff":
            _diff(console, models_dir, args.name, args.a, args.b)
        elif args.action == "encrypt":  # registry/key_rotation.py
            done = encrypt_version(models_dir, args.name, args.version, args.actor)
            console.print(f"{done.name} v{done.version}: {done.files} model file(s) encrypted with key '{done.key_id}'")
        elif args.action == "rotate-keys":  # registry/key_rotation.py
            rotated = rotate_model_keys(models_dir, args.name, args.actor)
            changed = [r for r in rotated if r.files]
            key = rotated[0].key_id if rotated else "-"
            console.print(f"{len(changed)} of {len(rotated)} encrypted version(s) re-encrypted with key '{key}'")
            runs_dir = Path(args.runs_dir) if args.runs_dir else models_dir.parent / "logs"
            snapshots = rotate_run_snapshots(runs_dir)  # data/snapshot_files.py: *.parquet.enc of the runs
            console.print(f"{snapshots} sealed snapshot file(s) under {runs_dir} re-encrypted")
        elif args.action == "seal-snapshots":  # registry/key_rotation.py
            runs_dir = Path(args.runs_dir) if args.runs_dir else models_dir.parent / "logs"
            console.print(f"{len(seal_run_snapshots(runs_dir))} plain snapshot file(s) under {runs_dir} sealed")
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _promote(models_dir: Path, args: argparse.Namespace) -> AliasChange:
    """`models promote` with the fairness gate; an override without a reason is refused before anything moves."""
    if args.override_fairness and not (args.reason or "").strip():
        raise FulqrunMLError('--override-fairness needs --reason "..." (it is written to the audit log)')
    if args.reason and not args.override_fairness:
        raise FulqrunMLError("--reason is the reason for --override-fairness; add that flag or drop --reason")
    governance = load_governance_config(args.governance_config)
    reason = args.reason if args.override_fairness else None
    return promote(models_dir, args.name, args.version, args.alias, args.actor, governance, reason)


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _list(console: Console, models_dir: Path, name: str | None) -> None:
    if name is None:
        table = Table(title=f"models in {models_dir}")
        for column in ("model", "versions", "latest", "production", "candidate"):
            table.add_column(column)
        for model in list_models(models_dir):
            state, versions = read_alias_state(models_dir, model), list_versions(models_dir, model)
            table.add_row(
                model,
                str(len(versions)),
                f"v{versions[-1]}",
                f"v{state.production}" if state.production else "-",
                f"v{state.candidate}" if state.candidate else "-",
            )
        console.print(table)
        return
    rows = list_model_versions(models_dir, name)
    if not rows:
        raise FulqrunMLError(f"no published versions of model '{name}' under {models_dir}")
    table = Table(title=f"{name}: versions")
    columns = ("version", "aliases", "published", "holdout AUC", "rep AUC", "ECE", "data hash", "parent", "retrain")
    for column in columns:
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            f"v{r.version}",
            ", ".join(r.aliases) or "-",
            r.published_at or "-",
            _num(r.holdout_auc),
            _num(r.rep_auc),
            _num(r.ece),
            r.data_hash or "-",
            r.parent or "-",
            r.retrain or "-",
        )
    console.print(table)


def _show(console: Console, models_dir: Path, name: str, version: str, card: bool, as_json: bool) -> None:
    info = show_version(models_dir, name, version)
    if as_json:
        console.print_json(json.dumps(info, default=str))
        return
    if card and info["model_card"]:
        console.print(Markdown(info["model_card"]))
        return
    console.rule(f"[bold]{name} v{info['version']}[/bold]  aliases: {', '.join(info['aliases']) or '-'}")
    console.print(f"path: {info['path']}   published: {info['metadata'].get('published_at', '-')}")
    metrics = Table(title="holdout metrics")
    for column in ("", "AUC", "log loss", "Brier", "ECE", "accuracy", "n"):
        metrics.add_column(column, justify="right")
    for who in ("model", "rep", "oracle"):
        m = info["metrics"].get(who)
        if isinstance(m, dict):
            metrics.add_row(
                who, *(_num(m.get(k)) for k in ("auc", "log_loss", "brier", "ece", "accuracy")), str(m.get("n"))
            )
    console.print(metrics)
    lineage = Table(title="lineage")
    lineage.add_column("key")
    lineage.add_column("value", overflow="fold")
    for key in ("data_hash", "git_commit", "wandb_run_id", "wandb_artifacts", "parent", "run_dir", "epochs"):
        value = info["lineage"].get(key)
        lineage.add_row(key, json.dumps(value, default=str) if isinstance(value, dict) else str(value or "-"))
    console.print(lineage)
    audit = Table(title="audit (this version)")
    for column in ("when", "who", "what", "alias", "from", "to"):
        audit.add_column(column)
    for r in info["audit"]:
        audit.add_row(
            r["at"],
            r["actor"],
            r["action"],
            str(r.get("alias") or "-"),
            str(r.get("from_version") or "-"),
            str(r.get("to_version") or "-"),
        )
    console.print(audit)


def _report_change(console: Console, change: AliasChange, on_change: OnChange | None) -> None:
    def label(v: int | None) -> str:
        return f"v{v}" if v is not None else "(none)"

    if not change.changed:
        console.print(f"{change.name}: {change.alias} already at {label(change.to_version)}; nothing changed")
        return
    console.print(
        f"{change.name}: {change.action} {change.alias} {label(change.from_version)} -> {label(change.to_version)} "
        f"by {change.actor} at {change.at}"
    )
    if on_change is not None:
        on_change(change)


def _diff(console: Console, models_dir: Path, name: str, a: str, b: str) -> None:
    result = diff(models_dir, name, a, b)
    if result.identical:
        console.print(f"{name}: v{result.a} and v{result.b} have the same metrics, config and lineage")
        return
    for title, changes in (("metrics", result.metrics), ("config", result.config), ("lineage", result.lineage)):
        if not changes:
            continue
        table = Table(title=f"{name} {title}: v{result.a} -> v{result.b}")
        for column in ("key", f"v{result.a}", f"v{result.b}", "delta"):
            table.add_column(column, overflow="fold")
        for change in changes:
            table.add_row(change.key, _cell(change.a), _cell(change.b), _delta(change))
        console.print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


def _delta(change: Change) -> str:
    return f"{change.delta:+.4g}" if change.delta is not None else ""
