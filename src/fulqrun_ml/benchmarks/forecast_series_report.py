"""Markdown and PNG of the forecast leaderboard's `user_tables` and `hierarchy` sections (forecast_series_study)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

FORECASTERS = (
    "model",
    "model_raw",
    "model_bottom_up",
    "model_mint",
    "seasonal_naive",
    "ses",
    "holt_winters",
    "auto_ets",
    "auto_arima",
    "theta",
)
ROW_NAMES = {
    "model": "nbeats",
    "model_raw": "nbeats_raw",
    "model_bottom_up": "nbeats+bottom_up",
    "model_mint": "nbeats+mint_shrink",
}


def _cell(stat: dict[str, float], digits: int = 3) -> str:
    if stat["min"] == stat["max"]:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} [{stat['min']:.{digits}f}, {stat['max']:.{digits}f}]"


def render_series_sections(sections: dict[str, Any]) -> str:
    """Each section: one table per level (mean [min, max] over seeds), then the goals as measured."""
    lines: list[str] = []
    for name, section in sections.items():
        runs = section["runs"]
        lines += [
            f"## {name}",
            "",
            f"Data: {section['data']}. Protocol: {section['protocol']}. Seeds {section['seeds']} (fixture and "
            "training); cells show the mean [min, max] over seeds. Network: training "
            f"{sum(r['train_seconds'] for r in runs) / len(runs):.0f} s per run, "
            f"{runs[0]['epochs']} epochs, {runs[0]['params']} parameters; ONNX Runtime (1 thread) "
            f"{runs[0]['onnx_us_per_row']['batch_1']:.0f} µs/row at batch 1, "
            f"{runs[0]['onnx_us_per_row']['batch_1024']:.1f} µs/row at batch 1024.",
            "",
        ]
        for level, by_who in section["summary"].items():
            lines += [
                f"### {name} / {level}",
                "",
                "| forecaster | WAPE | MASE | pinball | coverage@80 | width@80 |",
                "|---|---|---|---|---|---|",
            ]
            for who in FORECASTERS:
                if who in by_who:
                    m = by_who[who]
                    lines.append(
                        f"| {ROW_NAMES.get(who, who)} | {_cell(m['wape'])} | {_cell(m['mase'])} | "
                        f"{_cell(m['pinball'])} | {_cell(m['coverage'])} | {_cell(m['interval_width'])} |"
                    )
            c = by_who["target_check"]
            goals = ("anchor_target_met", "naive_target_met", "coverage_target_met")
            met = {k: "met" if c[k] else "missed" for k in goals}
            rec = "".join(
                f" {ROW_NAMES[r]} WAPE {c[f'{r}_wape']:.3f} ({'no worse' if c[f'{r}_no_worse'] else 'WORSE'})."
                for r in ("model_bottom_up", "model_mint")
                if f"{r}_wape" in c
            )
            lines += [
                "",
                f"Goals: WAPE {c['wape_model']:.3f} vs best anchor {c['best_anchor']} {c['wape_best_anchor']:.3f}: "
                f"{c['wape_reduction_vs_best_anchor']:+.1%} (goal >= 10%: {met['anchor_target_met']}); "
                f"vs seasonal naive {c['wape_reduction_vs_seasonal_naive']:+.1%} (goal >= 35%: "
                f"{met['naive_target_met']}). Noise floor (oracle WAPE) {c['noise_floor_wape']:.3f}: "
                f"at most {c['max_reachable_reduction_vs_best_anchor']:.1%} below the best anchor and "
                f"{c['max_reachable_reduction_vs_seasonal_naive']:.1%} below seasonal naive are reachable. Coverage@80 "
                f"{c['coverage_80']:.3f} (goal 77-83%: {met['coverage_target_met']}).{rec}",
                "",
            ]
    return "\n".join(lines)


def render_series_png(sections: dict[str, Any]) -> bytes:
    """WAPE per level and forecaster (mean over seeds, min-max as error bars), with the noise floor line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, lv) for s, sec in sections.items() for lv in sec["summary"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (name, level) in zip(axes[0], panels, strict=True):
        by_who = sections[name]["summary"][level]
        who = [w for w in FORECASTERS if w in by_who and w != "model_raw"]
        mean = [by_who[w]["wape"]["mean"] for w in who]
        err = [
            [m - by_who[w]["wape"]["min"] for w, m in zip(who, mean, strict=True)],
            [by_who[w]["wape"]["max"] - m for w, m in zip(who, mean, strict=True)],
        ]
        ax.bar(range(len(who)), mean, yerr=err, color=["C0" if w.startswith("model") else "C7" for w in who])
        ax.axhline(by_who["target_check"]["noise_floor_wape"], color="C3", linestyle="--", label="noise floor")
        ax.set_xticks(range(len(who)), [ROW_NAMES.get(w, w) for w in who], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{name} / {level}", fontsize=9)
        ax.set_ylabel("WAPE")
        ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def png_path(reports_dir: Path) -> Path:
    return reports_dir / "forecast_series.png"
