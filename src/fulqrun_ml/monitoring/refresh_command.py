"""`fulqrun-ml monitor refresh`: one daily refresh (monitoring/refresh.py) from cron or the systemd timer.

    fulqrun-ml monitor refresh --task deal_win [--name NAME] [--models-dir DIR] [--config refresh]
                               [--override data=crm_postgres ...] [--webhook-url URL] [--out result.json]

Gates, data overrides and the work directory come from configs/monitoring/refresh.yaml; a rejected candidate
or a rollback is an alert: logged, appended to the registry's audit log and sent to the monitoring config's
webhook (with an idempotency key). The promotion itself goes through the registry, so the governance
fairness gate of `models promote` applies. Prints the result as JSON; exit 0 when the refresh ran (whatever
it decided), 1 (via the CLI) when the data or the registry was unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from fulqrun_ml.monitoring.commands import load_monitoring_config, webhook_client
from fulqrun_ml.monitoring.refresh import RefreshGates, refresh
from fulqrun_ml.monitoring.webhook import idempotency_key
from fulqrun_ml.registry.audit import append_audit
from fulqrun_ml.registry.commands import default_models_dir
from fulqrun_ml.registry.locking import atomic_write_json, model_lock

log = logging.getLogger(__name__)
ACTOR = "refresh-job"


def alert_sink(models_dir: Path, name: str, webhook_url: str | None, config: str) -> Any:
    """The `alert(kind, detail)` callback refresh() calls: log, audit log of the model, webhook."""
    section = load_monitoring_config(config).get("alerts", {})
    webhook = webhook_client(webhook_url or section.get("webhook_url"), section)
    audit_dir = models_dir / name

    def alert(kind: str, detail: dict[str, Any]) -> None:
        log.warning("refresh alert %s: %s", kind, detail)
        delivered = None
        if webhook is not None:
            key = idempotency_key(kind, name, json.dumps(detail, sort_keys=True, default=str))
            delivered = webhook.deliver({"type": "refresh_alert", "kind": kind, **detail}, key).delivered
        audit_dir.mkdir(parents=True, exist_ok=True)
        with model_lock(audit_dir):
            append_audit(audit_dir, "alert", ACTOR, rule=kind, webhook_delivered=delivered, **detail)

    return alert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fulqrun-ml monitor refresh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="deal_win")
    parser.add_argument("--name", help="registered model name (default: the task's)")
    parser.add_argument("--models-dir", default=str(default_models_dir()))
    parser.add_argument("--config", default="refresh", help="configs/monitoring/<name>.yaml or a path")
    parser.add_argument("--monitoring-config", default="default", help="where alerts go (its `alerts` section)")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    parser.add_argument("--webhook-url", help="override the monitoring config's alerts.webhook_url")
    parser.add_argument("--out", help="also write the result JSON here (atomically)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_monitoring_config(args.config)
    name = args.name or args.task
    models_dir = Path(args.models_dir)
    gates = RefreshGates(**config.get("gates", {}))
    result = refresh(
        models_dir,
        name,
        args.task,
        Path(config.get("work_dir", "outputs/refresh")),
        overrides=[*config.get("overrides", []), *args.override],
        warm_overrides=config.get("warm_overrides", ["trainer.max_epochs=3"]),
        gates=gates,
        alert=alert_sink(models_dir, name, args.webhook_url, args.monitoring_config),
    )
    text = json.dumps(result.to_dict(), indent=2, default=str)
    print(text)
    if args.out:
        atomic_write_json(Path(args.out), result.to_dict())
    return 0
