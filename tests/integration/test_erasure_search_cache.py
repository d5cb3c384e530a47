"""`governance forget` deletes the similar-deal search's cached profile vectors of the subject's deals: the ones
the search's index encoded and the one a question at an arbitrary date encoded, and keeps everyone else's.

The search runs for real (SimilarDealSearch with the on-disk cache; the sentence model replaced by the
deterministic hash backend of erasure_setup). Which keys are the subject's is worked out with the search's own
objects (its profiles frame and the encoder's scrub), and the question's key by watching the cache's `put`,
never with the erasure's code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.erasure.cli import main
from fulqrun_ml.search.deal_profiles import OPEN_STAGES, stage_at
from fulqrun_ml.search.similar import SimilarDealSearch
from fulqrun_ml.text.cache import text_key
from fulqrun_ml.text.encoder import TextEncoder
from fulqrun_ml.text.model import MODEL_TAG
from tests.integration.erasure_setup import HashBackend


def _key(encoder: TextEncoder, text: str) -> str:
    return text_key(encoder.scrub([text], "profile")[0], MODEL_TAG)


def test_forget_deletes_the_subjects_search_profiles_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables = simulate_crm(n_opportunities=16, n_companies=5, n_reps=2, seed=11).tables
    crm = write_crm_directory(tables, tmp_path)  # what the forget reads back (typed by the same contract)
    cache = tmp_path / "cache"
    encoder = TextEncoder(backend=HashBackend(), cache_dir=cache)
    search = SimilarDealSearch(tables, encoder)
    with_notes = search.profiles[search.profiles["notes"] != ""]
    company = with_notes["company_id"].mode()[0]
    deals = set(tables.opportunities.loc[tables.opportunities["company_id"] == company, "id"])
    mine = {
        _key(encoder, t) for t, d in zip(with_notes["text"], with_notes["opportunity_id"], strict=True) if d in deals
    }
    others = {_key(encoder, t) for t, d in zip(with_notes["text"], with_notes["opportunity_id"], strict=True)}
    others -= mine

    # A question about one of the subject's deals, an hour after one of its notes: a profile no index row holds.
    notes = tables.notes[tables.notes["related_id"].isin(deals)].sort_values("created_at")
    asked = next(
        (deal, when + pd.Timedelta(hours=1))
        for deal, when in zip(notes["related_id"], notes["created_at"], strict=True)
        if stage_at(tables, deal, when + pd.Timedelta(hours=1)) in OPEN_STAGES
    )
    put = []
    real_put = encoder.cache.put
    monkeypatch.setattr(encoder.cache, "put", lambda key, vector: (put.append(key), real_put(key, vector)))
    search.similar(asked[0], as_of=asked[1], outcome="open")
    mine |= set(put)
    stored = {p.stem for p in cache.rglob("*.npy")}
    assert mine and others and mine <= stored and others <= stored

    (tmp_path / "empty").mkdir()
    out = tmp_path / "reports"
    rc = main(
        ["forget", "--company", company, "--crm", str(crm), "--embedding-cache", str(cache),
         "--prediction-logs", str(tmp_path / "empty"), "--models-dir", str(tmp_path / "m"), "--out", str(out)]
    )  # fmt: skip
    report = json.loads(next(out.glob("*.json")).read_text())

    assert rc == 0 and report["stores"]["embedding_cache"]["hits_after"] == 0
    left = {p.stem for p in cache.rglob("*.npy")}
    assert not (mine & left), f"{len(mine & left)} of the subject's {len(mine)} profile vectors left"
    assert others <= left  # nobody else's profile went
