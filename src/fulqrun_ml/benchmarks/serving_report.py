"""The serving benchmark's verdict and picture: the issue's targets judged on a report's rows, and the plot.

Kept apart from the load run so the targets can be checked (and tested) on rows alone, without a server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

IDENTITY = "identity"  # the echo model served next to the real one: Triton's floor for the same requests
FLOOR = "floor"  # the one-tensor identity: one FP32 tensor of as many values as the model has fields
FLOOR_INPUT = "x"
TARGET_FLOOR_RATIO = 0.8  # throughput (and batched predictions/s) >= 0.8 x the floor's
TARGET_10K_FLOOR_P99_RATIO = 1.5  # 10,000 concurrent: p99 <= 1.5 x the floor's p99
TARGET_P99_SINGLE_MS = 2.0
TARGET_IDENTITY_RATIO = 0.8
TARGET_10K_P99_MS = 1500.0
TARGET_BATCHED_P99_MS = 100.0
TARGET_BATCHED_PREDICTIONS_PER_S = 150_000


def _find(
    rows: list[dict[str, Any]], model: str, protocol: str, concurrency: int, rows_per_request: int = 1
) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in rows
            if r["model"] == model
            and r["protocol"] == protocol
            and r["concurrency"] == concurrency
            and r["rows_per_request"] == rows_per_request
        ),
        None,
    )


def add_floor_ratios(rows: list[dict[str, Any]]) -> None:
    """Every row gets `floor_ratio` (its predictions/s over the one-tensor floor's at the same protocol and point)
    and `floor_p99_ratio` (its p99 over the floor's); None where the floor has no number."""
    for row in rows:
        floor = _find(rows, FLOOR, row["protocol"], row["concurrency"], row["rows_per_request"])
        speed = floor and floor["predictions_per_s"]
        latency = floor and floor["p99_ms"]
        row["floor_ratio"] = round(row["predictions_per_s"] / speed, 3) if speed else None
        row["floor_p99_ratio"] = round(row["p99_ms"] / latency, 3) if latency and row["p99_ms"] is not None else None


def floor_targets(rows: list[dict[str, Any]], model: str, protocol: str) -> list[tuple[str, Any, bool]]:
    """The issue's goals against the one-tensor floor measured in the same run (rows carry `floor_ratio`)."""
    checks = []
    m64 = _find(rows, model, protocol, 64)
    if m64 and m64.get("floor_ratio") is not None:
        met = m64["floor_ratio"] >= TARGET_FLOOR_RATIO
        checks.append(("throughput >= 0.8 x one-tensor floor at concurrency 64", m64["floor_ratio"], met))
    big = _find(rows, model, protocol, 10000)
    if big:
        ratio = big.get("floor_p99_ratio")
        met = big["requests"] > 0 and big["errors"] == 0 and ratio is not None and ratio <= TARGET_10K_FLOOR_P99_RATIO
        checks.append(("10,000 concurrent: 0 errors and p99 <= 1.5 x floor p99", [big["errors"], ratio], met))
    batched = _find(rows, model, protocol, 160, 64)
    if batched and batched.get("floor_ratio") is not None:
        met = batched["floor_ratio"] >= TARGET_FLOOR_RATIO
        checks.append(("160 x 64 rows: predictions/s >= 0.8 x one-tensor floor", batched["floor_ratio"], met))
    return checks


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def evaluate_targets(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The issue's serving targets, checked against this run's rows (met or the gap, in numbers).

    Per protocol, each target whose point was measured: single-record p99 <= 2 ms at concurrency 1; model
    throughput >= 0.8 x the identity's at concurrency 64; at 10,000 concurrent, answers with 0 errors and
    p99 <= 1.5 s; 160 concurrent requests of 64 rows with p99 strictly below 100 ms and >= 150k predictions/s.
    A point without latencies (no answers) never meets a latency target."""
    out = []
    for protocol in sorted({r["protocol"] for r in rows}):
        checks = []
        one = _find(rows, model, protocol, 1)
        if one:
            met = _at_most(one["p99_ms"], TARGET_P99_SINGLE_MS)
            checks.append(("single-record p99 <= 2 ms at concurrency 1", one["p99_ms"], met))
        m64, i64 = _find(rows, model, protocol, 64), _find(rows, IDENTITY, protocol, 64)
        if m64 and i64 and i64["rps"]:
            ratio = m64["rps"] / i64["rps"]
            met = ratio >= TARGET_IDENTITY_RATIO
            checks.append(("throughput >= 0.8 x identity at concurrency 64", round(ratio, 3), met))
        big = _find(rows, model, protocol, 10000)
        if big:
            met = big["requests"] > 0 and big["errors"] == 0 and _at_most(big["p99_ms"], TARGET_10K_P99_MS)
            checks.append(("10,000 concurrent: 0 errors and p99 <= 1.5 s", [big["errors"], big["p99_ms"]], met))
        batched = _find(rows, model, protocol, 160, 64)
        if batched:
            p99 = batched["p99_ms"]
            fast = p99 is not None and p99 < TARGET_BATCHED_P99_MS
            met = fast and batched["predictions_per_s"] >= TARGET_BATCHED_PREDICTIONS_PER_S
            value = [p99, batched["predictions_per_s"]]
            checks.append(("10,240 in flight: p99 < 100 ms and >= 150k predictions/s", value, met))
        checks += floor_targets(rows, model, protocol)
        out += [{"protocol": protocol, "target": t, "value": v, "met": bool(m)} for t, v, m in checks]
    return out


# --- the plot ---------------------------------------------------------------------------------------------


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Throughput and p99 vs concurrency, model vs identity, one line per model x protocol; the batched
    mode (many records per request) is drawn as separate markers in predictions/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"http": "-", "grpc": "--"}
    colors = {IDENTITY: "tab:gray", FLOOR: "tab:green"}
    for model in dict.fromkeys(r["model"] for r in rows):
        color = colors.get(model, "tab:blue")
        for protocol in dict.fromkeys(r["protocol"] for r in rows):
            single = sorted(
                (r for r in rows if r["model"] == model and r["protocol"] == protocol and r["rows_per_request"] == 1),
                key=lambda r: r["concurrency"],
            )
            label = f"{model} {protocol}"
            if single:
                xs = [r["concurrency"] for r in single]
                ax_t.plot(
                    xs, [r["predictions_per_s"] for r in single], styles[protocol], color=color, marker="o", label=label
                )
                ax_p.plot(
                    xs, [_nan(r["p99_ms"]) for r in single], styles[protocol], color=color, marker="o", label=label
                )
            for r in rows:
                if r["model"] == model and r["protocol"] == protocol and r["rows_per_request"] > 1:
                    marker = "*" if protocol == "http" else "P"
                    batch_label = f"{label}, {r['rows_per_request']} rows/request"
                    ax_t.scatter(
                        r["concurrency"], r["predictions_per_s"], s=120, marker=marker, color=color, label=batch_label
                    )
                    ax_p.scatter(
                        r["concurrency"], _nan(r["p99_ms"]), s=120, marker=marker, color=color, label=batch_label
                    )
    for ax, title, unit in ((ax_t, "throughput", "predictions / s"), (ax_p, "p99 latency", "ms")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    m = report["model"]
    fig.suptitle(
        f"Triton on {report['machine']['cpu_count']} CPUs: {m['name']} v{m['version']} ({m.get('layout', 'named')} "
        "layout) vs same-input identity and one-tensor floor (load and client on the same cores)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
