"""Deal win under the simulator's engagement dynamics (`simulate_crm(engagement="dynamic")`), for the sequence study.

    .venv/bin/python scripts/bench_sequence.py --engagement dynamic --seeds 0 1 2 3 4

Why a section of its own: under the default poisson engagement, counts are sufficient and the fused model gains
nothing (the report's top section). Here the same study runs on the dynamic story, and three extra numbers say
whether the trajectory, not the count, carries the signal, all on the same holdout rows:
  counts-only     logistic regression on the tabular features + point-in-time inbound/outbound counts;
  level oracle    P(win | every latent except the engagement story, stage), the story integrated out
                  (`level_only_probability`): the best any reader of the deal's level (what counts estimate) can do;
  oracle          P(win | every latent, stage): the level oracle plus the trend and champion latents.
The fused-minus-tabular gain gets a 95% Student-t interval over seeds (paired: same seed, same data).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from fulqrun_ml.data.simulator import SimulatedCRM, oracle_win_probability
from fulqrun_ml.data.simulator_engagement import level_only_probability
from fulqrun_ml.sequence.datamodule import DealWinSequenceDataModule
from fulqrun_ml.tasks.metrics import binary_report

DYNAMIC_STORY = (
    "`simulate_crm(engagement='dynamic')` (data/simulator_engagement.py, docs/simulator.md): a latent trend tilts "
    "the customer's engagement over the deal's life and moves the win odds; lost deals go dark weeks before close "
    "while the rep keeps chasing; outbound calls and emails get replies whose latency follows the trend; champions "
    "leave and some are replaced; stakeholders join over time; reps push at quarter end. Same deals, reps and "
    "companies as the default CRM."
)


def t_interval(values: list[float], level: float = 0.95) -> dict[str, float]:
    """Mean and Student-t confidence interval of the mean (a single value gives a zero-width interval)."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "low": mean, "high": mean, "level": level}
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "level": level}


def level_oracle(loaded: SimulatedCRM, frame: Any) -> np.ndarray:
    """P(win | latents but the engagement story, deal open at its stage) for each (opportunity_id, as_of) row."""
    latent = loaded.latent.set_index("opportunity_id").reindex(frame["opportunity_id"])
    p = latent["true_win_probability"].to_numpy(dtype=np.float64)
    base = np.log(p / (1.0 - p)) - latent["engagement_logit_shift"].to_numpy(dtype=np.float64)
    return oracle_win_probability(level_only_probability(base), frame["stage_index"].to_numpy())


def oracle_gap(datamodule: DealWinSequenceDataModule) -> dict[str, float] | None:
    """Holdout AUC of the level oracle and the full oracle (None on data without the dynamic story)."""
    loaded = datamodule.source()
    if not isinstance(loaded, SimulatedCRM) or "engagement_logit_shift" not in loaded.latent:
        return None
    test = datamodule.frames["test"]
    labels = test["label"].to_numpy()
    return {
        "level_oracle_auc": binary_report(level_oracle(loaded, test), labels)["auc"],
        "oracle_auc": binary_report(test["oracle_probability"].to_numpy(), labels)["auc"],
    }


def dynamic_lines(section: dict[str, Any] | None, poisson: dict[str, Any] | None = None) -> list[str]:
    """The report's Markdown section for the dynamic-engagement study."""
    if not section:
        return []
    s = section["summary"]
    gain, ci = s["auc_gain_pp"], section["auc_gain_ci_pp"]
    agg, gap = section.get("aggregates") or {}, section.get("oracle_gap") or {}
    diag, data = s["diagnostics"], section["data"]
    counts = agg.get("logistic_tabular_plus_direction_counts_auc")
    lines = [
        "## Deal win under engagement dynamics (`--engagement dynamic`)",
        "",
        section["data_change"],
        "",
        f"{data['test_rows']} holdout snapshots, seeds {section['seeds']}, max_len {data['max_len']}, "
        f"mean {data['train_mean_events']} events per training row.",
        "",
        "| model (holdout AUC) | dynamic engagement | poisson engagement (top section) |",
        "|---|---|---|",
    ]
    rows = [
        ("sequence + tabular (fused)", s["model"]["auc"]["mean"], _get(poisson, "model")),
        ("tabular only (ablation)", s["tabular_only"]["auc"]["mean"], _get(poisson, "tabular_only")),
        ("counts-only: logistic, tabular + inbound/outbound counts", counts, _get_agg(poisson)),
        ("level oracle (engagement story integrated out)", gap.get("level_oracle_auc"), _get(poisson, "oracle")),
        ("oracle (all latents)", gap.get("oracle_auc"), _get(poisson, "oracle")),
    ]  # fmt: skip
    for name, dynamic, default in rows:
        lines.append(f"| {name} | {_fmt(dynamic)} | {_fmt(default)} |")
    verdict = "met" if ci["low"] > 0 and gain["mean"] >= 1.5 else "not met"
    lines += [
        "",
        f"**AUC gain (fused − tabular-only): {gain['mean']:+.2f} pp, 95% CI [{ci['low']:+.2f}, {ci['high']:+.2f}]** "
        f"(t over {len(gain['values'])} seeds; per seed: {', '.join(f'{g:+.2f}' for g in gain['values'])}); "
        f"goal +1.5 pp with the CI above zero: {verdict}.",
        "",
        f"Fused model's holdout AUC: real sequences {diag['real_auc']:.4f}, event order shuffled within each deal "
        f"{diag['shuffled_order_auc']:.4f}, empty sequences {diag['no_history_auc']:.4f}.",
        "",
    ]
    return lines


def pretraining_lines(section: dict[str, Any] | None) -> list[str]:
    """The report's Markdown section for the pretraining ablation."""
    if not section:
        return []
    enc = section["encoder"]
    lines = [
        "## Self-supervised pretraining (CoLES) vs scratch at few labels (`sequence_pretrain_study`)",
        "",
        f"Dynamic-engagement CRM. One encoder pretrained with CoLES on {enc['deals']} deals' touches up to the "
        f"training split's end ({enc['cutoff']}), {enc['epochs']} epochs, {enc['seconds']} s; contrastive loss "
        f"{enc['losses'][0]} -> {enc['losses'][-1]}. Per labelled size, the training snapshots of N random training "
        f"deals; seeds {section['seeds']}; same holdout as above. Holdout AUC (mean over seeds):",
        "",
        "| labelled deals | scratch (fused) | pretrained (fused, fine-tuned) | tabular only "
        "| gain pretrained − scratch "
        "(95% CI) |",
        "|---|---|---|---|---|",
    ]
    for size, s in section["summary"].items():
        ci = s["gain_ci_pp"]
        lines.append(
            f"| {size} | {s['scratch']:.4f} | {s['pretrained']:.4f} | {s['tabular_only']:.4f} | "
            f"{ci['mean']:+.2f} pp [{ci['low']:+.2f}, {ci['high']:+.2f}] |"
        )
    met = all(s["gain_ci_pp"]["mean"] >= 0.5 for s in section["summary"].values())
    lines += ["", f"Goal +0.5 pp at <= 2k labelled deals: {'met' if met else 'not met'} (see the table).", ""]
    return lines


def freeze_lines(section: dict[str, Any] | None) -> list[str]:
    """The report's Markdown section for the freeze ablation (frozen vs fine-tuned vs scratch)."""
    if not section:
        return []
    enc = section["encoder"]
    lines = [
        "## Pretrained encoder frozen vs fine-tuned vs scratch (`sequence_pretrain_study --freeze-ablation`)",
        "",
        f"Same setup as the pretraining section: a CoLES encoder pretrained on {enc['deals']} deals' touches up to "
        f"{enc['cutoff']} ({enc['epochs']} epochs), then per labelled size and seed {section['seeds']}: scratch, "
        "pretrained and fine-tuned, pretrained and frozen (only the fusion head and the MLP learn). Holdout AUC "
        "(mean over seeds), gains over scratch with 95% t intervals:",
        "",
        "| labelled deals | scratch | fine-tuned | frozen | fine-tuned − scratch | frozen − scratch |",
        "|---|---|---|---|---|---|",
    ]
    for size, s in section["summary"].items():
        tuned, frozen = s["gain_ci_pp"], s["frozen_gain_ci_pp"]
        lines.append(
            f"| {size} | {s['scratch']:.4f} | {s['pretrained']:.4f} | {s['frozen']:.4f} | "
            f"{tuned['mean']:+.2f} pp [{tuned['low']:+.2f}, {tuned['high']:+.2f}] | "
            f"{frozen['mean']:+.2f} pp [{frozen['low']:+.2f}, {frozen['high']:+.2f}] |"
        )
    return [*lines, ""]


def _get(report: dict[str, Any] | None, arm: str) -> float | None:
    if not report:
        return None
    value = report["summary"].get(arm, {}).get("auc")
    return value["mean"] if isinstance(value, dict) else value


def _get_agg(report: dict[str, Any] | None) -> float | None:
    return ((report or {}).get("aggregates") or {}).get("logistic_tabular_plus_direction_counts_auc")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def lead_lines(section: dict[str, Any] | None) -> list[str]:
    """The report's Markdown section for lead conversion."""
    if not section:
        return []
    gain, data, base = section["auc_gain_pp"], section["data"], section["baselines_auc"]
    rows = [
        ("sequence + tabular (fused)", section["auc"]["model"]),
        ("tabular only (ablation)", section["auc"]["tabular_only"]),
    ]
    counts = section.get("counts_only") or {}
    if counts:
        rows.append(
            ("counts-only: logistic, tabular + per-type event counts", counts["logistic_tabular_plus_type_counts_auc"])
        )
        rows.append(("logistic, tabular features only", counts["logistic_tabular_auc"]))
    rows += [(name, auc) for name, auc in base.items()]
    diag = section["diagnostics"]
    return [
        "## Lead conversion with lead behaviour (`task=lead_conversion_sequence`)",
        "",
        section["data_change"],
        "",
        f"{data.get('test_rows')} holdout rows, seeds {section['seeds']}, max_len {data['max_len']}, mean "
        f"{data.get('train_mean_events')} events per training row. Holdout AUC (mean over seeds):",
        "",
        "| model | AUC |",
        "|---|---|",
        *[f"| {name} | {auc:.4f} |" for name, auc in rows],
        "",
        f"**AUC gain (fused − tabular-only): {gain['mean']:+.2f} pp, "
        f"95% CI [{gain['low']:+.2f}, {gain['high']:+.2f}]** "
        f"(per seed: {', '.join(f'{g:+.2f}' for g in gain['values'])}).",
        "",
        "The oracle knows every latent (the intent trend included) but not when a lead raises its hand or goes cold, "
        "which follow the outcome; a model reading the newest events sees part of that.",
        "",
        f"Fused model's holdout AUC: real sequences {diag['real_auc']:.4f}, event order shuffled within each lead "
        f"{diag['shuffled_order_auc']:.4f}, empty sequences {diag['no_history_auc']:.4f}.",
        "",
    ]
