"""Similar-deal search on the simulator: point-in-time candidates, filters, reasons, next steps recomputed
independently from the CRM tables, clear errors, and the `fulqrun-ml similar` command."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.search.commands import main as similar_main
from fulqrun_ml.search.similar import NEXT_DAYS, SimilarDealSearch, SimilarDealsError
from fulqrun_ml.text.encoder import TextEncoder

pytest.importorskip("sentence_transformers")


CRM = {"n_opportunities": 80, "n_companies": 30, "n_reps": 4, "n_leads": 5, "seed": 5}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def search(cache_dir: Path) -> SimilarDealSearch:
    return SimilarDealSearch(simulate_crm(**CRM).tables, TextEncoder(cache_dir=cache_dir))


def _open_at(search: SimilarDealSearch, as_of: pd.Timestamp, stage: str = "negotiation") -> str:
    """A deal that is in `stage` at as_of according to the stage history."""
    history = search.tables.stage_history.sort_values("changed_at")
    past = history[history["changed_at"] <= as_of].groupby("opportunity_id")["to_stage"].last()
    return str(past[past == stage].index[0])


def test_candidates_are_point_in_time(search: SimilarDealSearch) -> None:
    as_of = pd.Timestamp("2025-03-31", tz="UTC")
    deal = _open_at(search, as_of)
    answer = search.similar(deal, as_of=as_of, k=5)
    assert answer.stage == "negotiation" and 0 < len(answer.similar) <= 5
    opps = search.tables.opportunities.set_index("id")
    for similar in answer.similar:
        assert similar.opportunity_id != deal
        assert opps.loc[similar.opportunity_id, "stage"] == "closed_won"
        assert opps.loc[similar.opportunity_id, "close_date"] <= as_of  # its outcome was known at as_of
        assert similar.stage == "negotiation"
        assert opps.loc[similar.opportunity_id, "organization_id"] == opps.loc[deal, "organization_id"]
    scores = [s.similarity for s in answer.similar]
    assert scores == sorted(scores, reverse=True)


def test_outcome_and_segment_filters(search: SimilarDealSearch) -> None:
    as_of = pd.Timestamp("2025-09-30", tz="UTC")
    deal = _open_at(search, as_of, "proposal")
    lost = search.similar(deal, as_of=as_of, outcome="lost", same_segment=True, k=4)
    opps = search.tables.opportunities.set_index("id")
    companies = search.tables.companies.set_index("id")
    segment = companies.loc[opps.loc[deal, "company_id"], "size"]
    assert lost.similar and all(opps.loc[s.opportunity_id, "stage"] == "closed_lost" for s in lost.similar)
    assert all(f"same segment ({segment})" in s.reasons for s in lost.similar)


def test_next_steps_match_the_activity_table(search: SimilarDealSearch) -> None:
    as_of = pd.Timestamp("2025-09-30", tz="UTC")
    answer = search.similar(_open_at(search, as_of, "proposal"), as_of=as_of, k=3)
    acts = search.tables.activities
    history = search.tables.stage_history
    for similar in answer.similar:
        start = pd.Timestamp(similar.as_of)
        window = acts[
            (acts["related_id"] == similar.opportunity_id)
            & (acts["created_at"] > start)
            & (acts["created_at"] <= start + pd.Timedelta(days=NEXT_DAYS))
        ]
        assert similar.next_activities == {t: int((window["type"] == t).sum()) for t in similar.next_activities}
        later = history[(history["opportunity_id"] == similar.opportunity_id) & (history["changed_at"] > start)]
        assert similar.next_stage == later.sort_values("changed_at")["to_stage"].iloc[0]
        assert similar.reasons[0].startswith(f"profile similarity {similar.similarity:.2f}")
    mean_meetings = sum(s.next_activities["meeting"] for s in answer.similar) / len(answer.similar)
    assert answer.what_won_deals_did["meeting"]["similar_deals_next_30d"] == pytest.approx(mean_meetings, abs=0.01)


def test_bad_questions_get_clear_errors(search: SimilarDealSearch) -> None:
    with pytest.raises(SimilarDealsError, match="'nope' is not in the CRM"):
        search.similar("nope")
    won = search.tables.opportunities.query("stage == 'closed_won'")["id"].iloc[0]
    with pytest.raises(SimilarDealsError, match="already closed_won"):
        search.similar(won)
    with pytest.raises(SimilarDealsError, match="outcome must be one of"):
        search.similar(won, outcome="maybe")


def test_similar_command_writes_json(search: SimilarDealSearch, cache_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "search.yaml"  # the fixture's CRM and cache: the command re-encodes nothing
    config.write_text(
        json.dumps({"simulate": CRM, "k": 2, "outcome": "won", "cache_dir": str(cache_dir), "index": {"kind": "flat"}})
    )
    out = tmp_path / "answer.json"
    assert similar_main(["--config", str(config), "--out", str(out)]) == 0
    answer = json.loads(out.read_text())
    assert answer["filters"]["outcome"] == "won" and len(answer["similar"]) <= 2
    assert "@" not in out.read_text()  # no email reaches the answer
