"""The MEDDPICC ablation's arithmetic (intervals over seeds, lift, target verdict, the Markdown table) and the note
embeddings' point-in-time join (later notes never move a row's value; no note yet reads as zeros)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fulqrun_ml.benchmarks.meddpicc import ARMS, MODELS, TARGET_RATIO, interval, summarise
from fulqrun_ml.benchmarks.meddpicc_cli import markdown
from fulqrun_ml.benchmarks.meddpicc_text import COLUMNS, make_encoder, note_embedding_features
from fulqrun_ml.data.simulator import simulate_crm


def _seed(seed: int, ratios: dict[str, float]) -> dict:
    arms = {
        arm: {
            m: {
                "auc": 0.8 * r,
                "ratio_to_oracle": r,
                "ece": 0.03,
                "ece_noise_floor_p90": 0.04,
                "log_loss": 0.5,
                "ece_calibrated": 0.05,
                "ece_calibrated_noise_floor_p90": 0.04,
            }
            for m in MODELS
        }
        for arm, r in ratios.items()
    }
    return {"seed": seed, "oracle": {"auc": 0.8, "ece": 0.02}, "arms": arms}


def test_interval_is_a_t_interval_over_seeds():
    got = interval([0.90, 0.92, 0.97])
    half = stats.t.ppf(0.975, 2) * np.std([0.90, 0.92, 0.97], ddof=1) / np.sqrt(3)
    assert got["mean"] == pytest.approx(0.93, abs=1e-5) and got["high"] - got["mean"] == pytest.approx(half, abs=1e-5)
    assert np.isnan(interval([0.9])["low"])


def test_summary_lift_and_target_verdict():
    below = [_seed(s, {"tabular": 0.90, "tabular+meddpicc_history": 0.93, "tabular+text": 0.91,
                       "tabular+both": 0.95 + 0.001 * s}) for s in range(3)]  # fmt: skip
    summary = summarise(below)
    assert summary["arms"]["tabular+both"]["logistic"]["ratio_lift_over_tabular"]["mean"] == pytest.approx(0.051)
    assert summary["target"]["met"] is False and summary["target"]["gap"] == pytest.approx(TARGET_RATIO - 0.951)
    assert summary["arms"]["tabular"]["logistic"]["ece_within_noise_floor_seeds"] == 3
    assert summary["arms"]["tabular"]["logistic"]["ece_calibrated_within_noise_floor_seeds"] == 0
    above = [_seed(s, {arm: 0.97 for arm in ARMS}) for s in range(3)]
    assert summarise(above)["target"]["met"] is True
    table = markdown({"summary": summary, "config": {"seeds": [0, 1, 2], "crm": {"opportunities": 100}},
                      "seconds": 1.0, "machine": {"cpu_count": 2}})  # fmt: skip
    assert table.count("| tabular") == len(ARMS) * len(MODELS) and "missed by 0.009" in table


def test_note_embeddings_are_point_in_time(tmp_path):
    tables = simulate_crm(n_opportunities=60, n_companies=20, n_reps=3, n_leads=10, seed=4).tables
    deals = tables.opportunities["id"].head(12).to_numpy()
    created = tables.opportunities.set_index("id")["created_at"].reindex(deals)
    index = pd.concat(
        [
            pd.DataFrame({"opportunity_id": deals, "as_of": created.to_numpy() + pd.Timedelta(days=d)})
            for d in (0, 20, 40)
        ],
        ignore_index=True,
    )
    fit_before = tables.extracted_at - pd.Timedelta(days=300)
    encoder = make_encoder(tables, tmp_path / "cache")
    full = note_embedding_features(tables, index, fit_before, encoder)
    latest = max(index["as_of"].max(), fit_before)
    cut = dataclasses.replace(tables, notes=tables.notes[tables.notes["created_at"] <= latest])
    # float32 encoder and PCA products over a different number of notes round differently in the last bit
    # (3.6e-8 seen in CI); a note read from the future moves a component by orders of magnitude more.
    np.testing.assert_allclose(
        note_embedding_features(cut, index, fit_before, encoder)[COLUMNS], full[COLUMNS], rtol=1e-5, atol=1e-6
    )
    at_creation = full.head(len(deals))  # as_of = the deal's creation: no note can exist yet
    assert (at_creation[COLUMNS].to_numpy() == 0).all()
    assert (full[COLUMNS].abs().sum(axis=1) > 0).sum() > len(deals)  # later rows do read notes
