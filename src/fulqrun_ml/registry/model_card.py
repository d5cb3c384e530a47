"""MODEL_CARD.md, generated into every version at publish time from what the version already records.

Why generated and not written by hand: a card that is derived from `metadata.json`, `metrics.json` and
`lineage.json` (and `fairness.json`) cannot drift from the model it describes, and every version gets one.
Sections follow the usual model-card outline (intended use, data, metrics with baselines, calibration, fairness
by group for binary models, lineage, known limits); the limits are derived from the numbers (e.g. a model that
does not beat the rep's guess says so).
Missing inputs render as "not recorded" rather than failing, so any published directory gets a card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fulqrun_ml.registry.fairness_card import fairness_section
from fulqrun_ml.registry.fairness_gate import FAIRNESS_FILE

MODEL_CARD_FILE = "MODEL_CARD.md"
NOT_RECORDED = "not recorded"
# The holdout columns of each target kind (metadata.json's `target_kind`; binary when not recorded).
METRIC_COLUMNS = {
    "binary": (("auc", "AUC"), ("log_loss", "log loss"), ("brier", "Brier"), ("ece", "ECE"), ("accuracy", "accuracy")),
    "regression": (("mae", "MAE"), ("rmse", "RMSE"), ("r2", "R²"), ("concordance", "concordance")),
    "survival": (
        ("concordance", "Harrell's C"),
        ("integrated_brier", "integrated Brier"),
        ("nll", "NLL"),
        ("ece_30d", "ECE 30 d"),
        ("ece_horizon", "ECE horizon"),
        ("mae_median_days", "MAE of median (days)"),
    ),
}
# Row labels of metrics.json entries; any other entry is shown under its own name.
BASELINES = {
    "model": "this model",
    "model_uncalibrated": "this model before calibration",
    "rep": "rep's probability (baseline)",
    "stage_median": "median days to close per stage (baseline)",
    "km_stage": "Kaplan-Meier per stage (baseline)",
    "km_pooled": "Kaplan-Meier, all deals (baseline)",
    "lightgbm": "LightGBM on the same split (reference)",
    "oracle": "oracle: latent truth (ceiling)",
}
# The task config's `card` block (`intended_use`, `label` with {h} for the horizon), read from the version's
# lineage: a task describes itself where it is declared, so no code here knows task names.
DEFAULT_INTENDED_USE = "A model of the FulQrun ML platform; see the task config."
DEFAULT_LABEL = "the task's label within {h} days"
OUT_OF_SCOPE = (
    "Not for judging, ranking or paying individual reps or contacts, and not for automated decisions without a "
    "person in the loop. Scores are only meaningful for deals that resemble the training window's."
)
ECE_WARN = 0.05


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_model_card(version_dir: Path) -> Path:
    """Render the card from the JSON files already in `version_dir` and write it next to them."""
    card = render_model_card(
        read_json(version_dir / "metadata.json"),
        read_json(version_dir / "metrics.json"),
        read_json(version_dir / "lineage.json"),
        read_json(version_dir / FAIRNESS_FILE) or None,
    )
    path = version_dir / MODEL_CARD_FILE
    path.write_text(card, encoding="utf-8")
    return path


def render_model_card(
    metadata: dict[str, Any],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    fairness: dict[str, Any] | None = None,
) -> str:
    """The card's Markdown. Binary models (and any version with fairness results) get a Fairness section."""
    name, version = metadata.get("name", "model"), metadata.get("version", "?")
    task = metadata.get("task") or lineage.get("task") or NOT_RECORDED
    card = task_card(lineage)
    sections = [
        f"# Model card: {name} v{version}",
        f"Task `{task}`, backbone `{lineage.get('model') or NOT_RECORDED}`, published "
        f"{metadata.get('published_at', NOT_RECORDED)}. Generated from this version's metadata, metrics and "
        "lineage at publish time; do not edit by hand.",
        "## Intended use\n\n" + str(card.get("intended_use") or DEFAULT_INTENDED_USE) + "\n\n" + OUT_OF_SCOPE,
        "## Inputs and output\n\n" + _inputs(metadata),
        "## Data\n\n" + _data(lineage, str(card.get("label") or DEFAULT_LABEL)),
        "## Holdout metrics\n\n" + _metrics_table(metrics, metadata.get("target_kind", "binary")),
        "## Calibration\n\n" + _calibration(metrics, metadata, lineage),
        *(
            ["## Fairness\n\n" + fairness_section(fairness, metadata.get("fairness"))]
            if metadata.get("target_kind", "binary") == "binary" or fairness or metadata.get("fairness")
            else []
        ),
        *(["## Privacy\n\n" + privacy_section(lineage)] if (lineage.get("extra") or {}).get("privacy") else []),
        "## Export parity\n\n" + _parity(metrics, metadata),
        "## Lineage\n\n" + _lineage(metadata, lineage),
        "## Known limits\n\n" + "\n".join(f"- {limit}" for limit in known_limits(metrics, lineage)),
    ]
    return "\n\n".join(sections) + "\n"


def _inputs(metadata: dict[str, Any]) -> str:
    inputs = metadata.get("inputs") or []
    if not inputs:
        return NOT_RECORDED
    numeric = [i["name"] for i in inputs if i.get("dtype") != "string"]
    categorical = [i["name"] for i in inputs if i.get("dtype") == "string"]
    outputs = ", ".join(f"`{o['name']}`" for o in metadata.get("outputs", [])) or NOT_RECORDED
    return (
        f"Raw columns, one per input (preprocessing is inside the ONNX graph): {len(numeric)} numeric "
        f"({', '.join(numeric)}) and {len(categorical)} categorical ({', '.join(categorical)}); unseen categories "
        f"map to a shared 'unknown' embedding. Output: {outputs}."
    )


def task_card(lineage: dict[str, Any]) -> dict[str, Any]:
    """The `card` block of the task config the version was trained with (empty when not recorded)."""
    return ((lineage.get("config") or {}).get("task") or {}).get("card") or {}


def _data(lineage: dict[str, Any], label: str = DEFAULT_LABEL) -> str:
    data_cfg = (lineage.get("config") or {}).get("data") or {}
    source = data_cfg.get("source") or {}
    lines = []
    target = str(source.get("_target_", NOT_RECORDED))
    details = ", ".join(f"{k}={v}" for k, v in source.items() if not k.startswith("_"))
    lines.append(f"- Source: `{target}`" + (f" ({details})" if details else ""))
    if data_cfg:
        lines.append(
            f"- Snapshots every {data_cfg.get('snapshot_every_days', '?')} days after a "
            f"{data_cfg.get('warmup_days', '?')}-day warm-up; label = "
            + label.format(h=data_cfg.get("horizon_days", "?"))
            + f"; time-based split (val {data_cfg.get('val_fraction', '?')}, "
            f"test {data_cfg.get('test_fraction', '?')}) with an embargo between training labels and validation."
        )
    window = lineage.get("data_window") or {}
    for split in ("train", "val", "test"):
        if split in window:
            w = window[split]
            lines.append(f"- {split} window (as_of): {w.get('from')} to {w.get('to')}, {w.get('rows')} rows")
    if not window:
        lines.append(f"- Data window per split: {NOT_RECORDED}")
    lines.append(f"- Data hash (content of the snapshot set): `{lineage.get('data_hash') or NOT_RECORDED}`")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def _metrics_table(metrics: dict[str, Any], kind: str = "binary") -> str:
    """Every scored entry of metrics.json (model first, then baselines) in the columns of the target kind."""
    columns = METRIC_COLUMNS.get(kind, METRIC_COLUMNS["binary"])
    rows = [(BASELINES.get(who, who), m) for who, m in metrics.items() if isinstance(m, dict)]
    if not rows:
        return NOT_RECORDED
    n = (metrics.get("model") or rows[0][1]).get("n", "?")
    header = "| | " + " | ".join(title for _, title in columns) + " |"
    lines = [
        f"Scored on the holdout: the latest time period, {n} snapshots never used for training or model selection.",
        "",
        header,
        "|---" * (len(columns) + 1) + "|",
    ]
    lines += [f"| {label} | " + " | ".join(_fmt(m.get(key)) for key, _ in columns) + " |" for label, m in rows]
    return "\n".join(lines)


def _find(key: str, *sources: dict[str, Any]) -> Any:
    for source in sources:
        if key in source:
            return source[key]
        nested = source.get("calibration")
        if isinstance(nested, dict) and key in nested:
            return nested[key]
    return None


def _calibration(metrics: dict[str, Any], metadata: dict[str, Any], lineage: dict[str, Any]) -> str:
    model, rep = metrics.get("model") or {}, metrics.get("rep") or {}
    uncalibrated = metrics.get("model_uncalibrated") or {}
    temperature = _find("temperature", metrics, metadata, lineage)
    if metadata.get("target_kind") == "survival":
        if temperature is None:
            return NOT_RECORDED
        return (
            f"One temperature on the hazard logits, T = {_fmt(temperature)}, fitted on the validation NLL and inside "
            f"the graph. ECE of P(closed within 30 days) on the holdout: {_fmt(model.get('ece_30d'))} "
            f"(before: {_fmt(uncalibrated.get('ece_30d'))})."
        )
    if "ece" not in model:
        return NOT_RECORDED
    text = (
        f"Expected calibration error (15 equal-width bins, holdout): model {_fmt(model['ece'])}, "
        f"rep's probability {_fmt(rep.get('ece'))}. Brier score: model {_fmt(model.get('brier'))}."
    )
    method = _find("method", metadata, lineage) or "temperature"
    bias = _find("bias", metadata, lineage)
    if method == "isotonic":
        text += " Post-hoc isotonic calibration (fitted on validation, inside the graph)"
    elif temperature is not None:
        fitted = f"T = {_fmt(temperature)}" + (f", intercept {_fmt(bias)}" if bias is not None else "")
        name = "Platt scaling" if method == "platt" else "temperature scaling"
        text += f" Post-hoc {name} {fitted} (fitted on validation, inside the graph)"
    else:
        return text
    text += f"; ECE before it {_fmt(uncalibrated['ece'])}." if "ece" in uncalibrated else "."
    return text


def _parity(metrics: dict[str, Any], metadata: dict[str, Any]) -> str:
    parity = metadata.get("parity_max_abs_diff", metrics.get("export_parity_max_abs_diff"))
    if parity is None:
        return NOT_RECORDED
    return f"max |PyTorch - ONNX Runtime| probability on the holdout: {parity:.2e}."


def privacy_section(lineage: dict[str, Any]) -> str:
    """The DP-SGD accounting the run recorded (privacy/dp_sgd.py): the spent ε at δ and what it covers."""
    p = lineage["extra"]["privacy"]
    return (
        f"Trained with {p.get('mechanism', 'DP-SGD')}: ε = {p['epsilon']:.3g} at δ = {p['delta']:.3g} "
        f"(target ε {p.get('target_epsilon', '?')}, {p.get('accountant', '?')} accountant, noise multiplier "
        f"{p.get('noise_multiplier', 0):.3g}, clipping norm {p.get('max_grad_norm', '?')}, sample rate "
        f"{p.get('sample_rate', 0):.3g}, {p.get('steps', '?')} steps over {p.get('n_train', '?')} training rows). "
        f"Covers: {p.get('covers', 'the network weights')}."
    )


def _lineage(metadata: dict[str, Any], lineage: dict[str, Any]) -> str:
    parent = lineage.get("parent") or {}
    parent_text = (
        f"{parent.get('name')} v{parent.get('version')} (warm start)" if parent else "none (trained from scratch)"
    )
    net = lineage.get("net_config") or {}
    artifacts = lineage.get("wandb_artifacts") or {}
    rows = [
        ("data hash", lineage.get("data_hash") or metadata.get("data_hash")),
        ("git commit", lineage.get("git_commit") or metadata.get("git_commit")),
        ("W&B run id", lineage.get("wandb_run_id") or metadata.get("wandb_run_id")),
        ("W&B artifacts", ", ".join(f"{k}: `{v}`" for k, v in artifacts.items()) or None),
        ("parent version", parent_text),
        ("network", ", ".join(f"{k}={v}" for k, v in net.items()) or None),
        ("epochs", lineage.get("epochs")),
        ("training run", lineage.get("run_dir")),
    ]
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value if value not in (None, '') else NOT_RECORDED} |" for key, value in rows]
    return "\n".join(lines)


def known_limits(metrics: dict[str, Any], lineage: dict[str, Any]) -> list[str]:
    """Limits that always hold for this kind of model, plus those the recorded numbers reveal."""
    model, rep = metrics.get("model") or {}, metrics.get("rep") or {}
    source = str((((lineage.get("config") or {}).get("data") or {}).get("source") or {}).get("_target_", ""))
    limits = []
    if "simulator" in source:
        limits.append(
            "Trained and evaluated on **simulated** CRM data: the numbers show the pipeline works, not how the "
            "model will do on a real organisation's deals."
        )
    limits.append(
        "The holdout is the latest period of one extract: sales processes, pricing and territories drift, so "
        "monitor live calibration and retrain on newer windows."
    )
    if "auc" in model and "auc" in rep and model["auc"] <= rep["auc"]:
        limits.append(
            f"Does **not** beat the rep's own probability on the holdout (AUC {model['auc']:.4f} vs "
            f"{rep['auc']:.4f}); do not use it in place of the rep's estimate."
        )
    for baseline, key, better in (("stage_median", "mae", "lower"), ("km_stage", "concordance", "higher")):
        reference = metrics.get(baseline) or {}
        if key in model and key in reference:
            worse = model[key] >= reference[key] if better == "lower" else model[key] <= reference[key]
            if worse:
                limits.append(
                    f"Does **not** beat its baseline ({BASELINES[baseline]}) on the holdout: {key} "
                    f"{model[key]:.4f} vs {reference[key]:.4f} ({better} is better)."
                )
    if "ece" in model and model["ece"] > ECE_WARN:
        limits.append(f"Calibration error {model['ece']:.4f} exceeds {ECE_WARN}: treat scores as a ranking.")
    if model.get("n") is not None:
        limits.append(f"Metrics come from {model['n']} holdout snapshots; small segments may behave differently.")
    limits.append(
        "Categories not seen in training share one 'unknown' embedding; new industries, countries or stages "
        "get an average treatment until the model is retrained."
    )
    return limits
