"""The model leaderboard's sections: per task kind, how rows are combined over seeds, compared and rendered.

Nothing here trains: `fulqrun_ml.benchmarks.leaderboard` trains every backbone (one run per seed) through the
real entry point and hands the scored fits to `build_section`, which
- combines the fits of one row (the seeds of a network, or of a LightGBM setting that samples) into its
  seed-mean with a 95% t-interval per metric (`combine`);
- chooses the best network and the best baseline on the *validation* metric (`val_<metric>`);
- adds to every row the paired bootstrap interval of its holdout difference to the best baseline, and to every
  network its intervals against every baseline and reference (`leaderboard_stats`);
- and checks the kind's targets on those intervals.
A small registry (`SECTION_KINDS`) maps a task kind to its `leaderboard_kinds.SectionKind`:
  binary      `leaderboard_binary.py`: AUC, PR-AUC, log loss, Brier, ECE, thresholded metrics; LightGBM,
              logistic regression, rep / oracle; the calibration methods compared on validation
  regression  `leaderboard_regression.py`: MAE, RMSE, R², concordance; LightGBM regressor, ridge, stage median
  survival    `leaderboard_survival.py`: Harrell's C, integrated Brier, NLL, ECE, MAE of the median; LightGBM
              as a logistic-hazard model, Kaplan-Meier per stage and pooled
Another kind is one more module and one more entry in `SECTION_KINDS`. The forecaster and the sequence fusion
have their own (long) benchmarks; their committed reports are merged into the same board by
`external_sections.py` rather than re-run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fulqrun_ml.benchmarks.external_sections import render_external_markdown
from fulqrun_ml.benchmarks.leaderboard_binary import BINARY
from fulqrun_ml.benchmarks.leaderboard_kinds import Holdout, LeaderboardError, Scored, SectionKind
from fulqrun_ml.benchmarks.leaderboard_regression import REGRESSION
from fulqrun_ml.benchmarks.leaderboard_stats import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    RESAMPLES,
    bootstrap_counts,
    paired_difference,
    select_best,
    t_interval,
)
from fulqrun_ml.benchmarks.leaderboard_survival import SURVIVAL

# Task kind -> its section on the board. Add a kind here (and nowhere else in this file).
SECTION_KINDS: dict[str, SectionKind] = {kind.name: kind for kind in (BINARY, REGRESSION, SURVIVAL)}
# Combined over seeds by the largest value (a parity gap is a worst case), every other number by the mean.
WORST_CASE_KEYS = frozenset({"export_parity_max_abs_diff", "export_parity_expected_days"})


def section_kind(kind: str, task: str | None = None) -> SectionKind:
    """The registered section for a task kind; an unregistered kind is an error naming the task and the kind."""
    if kind not in SECTION_KINDS:
        who = f"task '{task}': " if task else ""
        raise LeaderboardError(
            f"{who}kind '{kind}' has no leaderboard section; registered kinds: {', '.join(sorted(SECTION_KINDS))} "
            "(add one to benchmarks/leaderboard_board.py::SECTION_KINDS)"
        )
    return SECTION_KINDS[kind]


def _number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _merge(key: str, values: list[Any]) -> Any:
    """One field over seeds: numbers by mean (parity by max), dicts key by key, anything else (and a value every
    seed shares, which keeps its type: parameter counts, row counts) as the first."""
    if all(v == values[0] for v in values[1:]):
        return values[0]
    if all(_number(v) for v in values):
        return float(max(values)) if key in WORST_CASE_KEYS else float(np.mean(values))
    if all(isinstance(v, dict) for v in values) and all(v.keys() == values[0].keys() for v in values):
        return {k: _merge(k, [v[k] for v in values]) for k in values[0]}
    return values[0]


def combine(fits: Sequence[Scored], kind: SectionKind) -> tuple[dict[str, Any], list[np.ndarray]]:
    """One row from the fits of one model (one per seed): metrics as seed-means, each of the kind's interval
    metrics and the validation metric with its t-interval and per-seed values; and the fits' predictions."""
    rows = [f.row for f in fits]
    if len(rows) == 1:
        return dict(rows[0]), [fits[0].predictions]
    row = {key: _merge(key, [r.get(key) for r in rows]) for key in rows[0]}
    row.pop("seed", None)
    row["seeds"] = [r.get("seed") for r in rows]
    tracked = [m for m in (*kind.interval_metrics, f"val_{kind.metric}") if all(_number(r.get(m)) for r in rows)]
    row["interval"] = {m: t_interval([r[m] for r in rows]) for m in tracked}
    row["per_seed"] = [{"seed": r.get("seed"), **{m: r[m] for m in tracked}} for r in rows]
    return row, [f.predictions for f in fits]


def group_fits(fits: Sequence[Scored]) -> list[list[Scored]]:
    """Fits grouped by row name, in the order names first appear."""
    groups: dict[str, list[Scored]] = {}
    for fit in fits:
        groups.setdefault(fit.row["name"], []).append(fit)
    return list(groups.values())


def compare(
    kind: SectionKind,
    holdout: Holdout,
    entries: Sequence[tuple[dict[str, Any], list[np.ndarray]]],
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows with their paired bootstrap intervals, and what was chosen on validation.

    Every row is rescored on the same resamples of the holdout rows (`kind.resample`); a network gets the
    interval of its difference to every baseline and reference (`paired[name][metric]`), every other row its
    difference to the best baseline. The best baseline is the fitted baseline (not a reference column) with
    the best validation metric."""
    rows = [row for row, _ in entries]
    counts = bootstrap_counts(len(holdout.frames["test"]), resamples, seed)
    resampled = {row["name"]: kind.resample(predictions, holdout, counts) for row, predictions in entries}
    best_baseline = select_best([r for r in rows if r["kind"] == "baseline"], kind.metric, kind.greater_is_better)
    best_neural = select_best([r for r in rows if r["kind"] == "neural"], kind.metric, kind.greater_is_better)
    for row in rows:
        if row["kind"] == "neural":
            others = [r["name"] for r in rows if r["kind"] != "neural"]
        else:
            others = [best_baseline["name"]] if best_baseline and best_baseline is not row else []
        row["paired"] = {
            other: {m: paired_difference(v, resampled[other][m]) for m, v in resampled[row["name"]].items()}
            for other in others
        }
    selection = {
        "metric": f"val_{kind.metric}",
        "best_neural": best_neural["name"] if best_neural else None,
        "best_baseline": best_baseline["name"] if best_baseline else None,
    }
    return rows, selection


def build_section(
    kind: SectionKind,
    holdout: Holdout,
    fits: Sequence[Scored],
    task: str,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """A section's rows, choices, intervals and targets from every fit of every model (no timing or data facts;
    the benchmark adds those)."""
    entries = [combine(group, kind) for group in group_fits(fits)]
    rows, selection = compare(kind, holdout, entries, resamples, seed)
    return {
        "kind": kind.name,
        "metric": kind.metric,
        "rows": rows,
        "selection": selection,
        "bootstrap": {
            "resamples": resamples,
            "seed": seed,
            "confidence": CONFIDENCE,
            "method": "paired percentile bootstrap over holdout rows; seeded rows are seed-means per resample",
        },
        "targets": kind.target_check(rows, task),
    }


def render_markdown(board: dict[str, Any]) -> str:
    """The board as Markdown: a table per task, the merged forecast/sequence sections, targets and notes."""
    lines = [
        "# Leaderboard",
        "",
        f"Generated {board['generated_at']} at commit `{board['git_commit']}` ({board['wall_seconds']} s); "
        f"tasks: {', '.join(board['tasks'])}. Every number is on a time-based holdout; every choice is made on "
        "validation.",
        "",
    ]
    for section in board["sections"].values():
        lines += section_kind(section["kind"], section["task"]).render_markdown(section)
    for key in ("forecast", "sequence"):
        if key in board:
            lines += [*render_external_markdown(board[key]), ""]
    machine = board["machine"]
    packages = machine["packages"]
    lines += ["## Notes", ""] + [f"- {n}" for n in board["notes"]]
    lines.append(
        f"- Machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, torch {packages.get('torch')}, "
        f"onnxruntime {packages.get('onnxruntime')}, lightgbm {packages.get('lightgbm')}; load average at start "
        f"{machine['load_average_at_start']}, at end {machine['load_average_1m_5m_15m']}."
    )
    return "\n".join(lines) + "\n"
