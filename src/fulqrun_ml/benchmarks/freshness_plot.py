"""The freshness benchmark's picture: the distribution of commit -> served-prediction times per write load, the
Redis read latency, serving by id against by record, and the catch-up after an outage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_freshness(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    for level in report["levels"]:
        values = np.sort(level["freshness_ms"])
        if len(values):
            p99 = level["freshness_p99_ms"]
            shown = f"{p99:.0f} ms" if p99 is not None else f"> {level['timed_out']} timed out"
            label = f"{level['achieved_events_per_s']:.0f} events/s (p99 {shown})"
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label)
    ax.axvline(1000, color="grey", linestyle="--", label="goal: p99 < 1 s")
    ax.set_xscale("log")
    ax.set_xlabel("commit -> served prediction by id (ms)")
    ax.set_ylabel("share of probes")
    ax.set_title("Freshness per write load")
    ax.legend(fontsize=8)

    ax = axes[1]
    by_id = report["by_id_vs_record"]
    bars = {"by record": by_id["record_rps"], "by id": by_id["by_id_rps"]}
    ax.bar(list(bars), list(bars.values()), color=["tab:blue", "tab:orange"])
    ax.axhline(0.7 * by_id["record_rps"], color="grey", linestyle="--", label="goal: 0.7 x record")
    ax.set_ylabel("requests/s (1 row, gRPC)")
    ax.set_title(f"Same server, concurrency {by_id['concurrency']}: ratio {by_id['by_id_over_record']}")
    ax.legend(fontsize=8)

    ax = axes[2]
    names = [f"{lv['achieved_events_per_s']:.0f}/s" for lv in report["levels"]]
    ax.bar(names, [lv["redis_read"]["p99_ms"] for lv in report["levels"]], color="tab:green", label="p99")
    ax.bar(names, [lv["redis_read"]["p50_ms"] for lv in report["levels"]], color="tab:olive", label="p50")
    outage = report["catch_up"]
    ax.set_title(
        f"Redis read of one id; catch-up: {outage['backlog_events']:,} events in {outage['restart_to_drained_s']} s",
        fontsize=9,
    )
    ax.set_xlabel("write load")
    ax.set_ylabel("ms")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
