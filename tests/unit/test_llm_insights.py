"""LLM insights: the real openai/anthropic SDK clients against a local fake server (the network edge).

Proves: a planted email/phone/name never leaves (the server's record of what it received is searched), the
PII guard refuses before sending, retries and timeouts, the cache, a cost log without PII or secrets, the
grounding check drops invented numbers, and the offline default sends nothing and is grounded itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data.pii import names_from_crm, scrubber_for_crm
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.insights.client import GuardedLLMClient
from fulqrun_ml.insights.facts import DealFacts, DealFactsError, deal_facts
from fulqrun_ml.insights.grounding import ground
from fulqrun_ml.insights.pii_guard import PIIGuard, PIILeakError
from fulqrun_ml.insights.providers import ProviderConfig, make_provider
from fulqrun_ml.insights.writer import KINDS, SYSTEM, NarrativeWriter, build_prompt, offline_narrative

from .llm_fake_server import FakeLLMServer

EMAIL, PHONE, NAME = "ivan.silva@acme-example.com", "+1 555 010 0199", "Ivan Silva"
AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
SECRET = "sk-test-not-a-real-key-123456"


@pytest.fixture(scope="module")
def planted() -> tuple:
    """A CRM with a note on an open deal naming a contact with their email and phone."""
    tables = simulate_crm(n_opportunities=120, n_companies=40, n_reps=5, n_leads=5, seed=5).tables
    history = tables.stage_history.sort_values("changed_at")
    stages = history[history["changed_at"] <= AS_OF].groupby("opportunity_id")["to_stage"].last()
    deal = str(stages[stages == "proposal"].index[0])
    note = {
        "id": "n-planted",
        "organization_id": tables.organizations["id"].iloc[0],
        "related_type": "opportunity",
        "related_id": deal,
        "created_at": AS_OF - pd.Timedelta(days=2),
    }
    text_column = next(c for c in ("body", "text", "content", "summary") if c in tables.notes.columns)
    note[text_column] = f"Met {NAME} ({EMAIL}, {PHONE}); budget is approved, decision in three weeks."
    notes = pd.concat([tables.notes, pd.DataFrame([{c: note.get(c) for c in tables.notes.columns}])])
    tables = dataclasses.replace(tables, notes=notes.astype({"created_at": "datetime64[ns, UTC]"}))
    known = names_from_crm(tables) | {NAME}
    facts = deal_facts(tables, deal, AS_OF, scrubber_for_crm(tables).__class__(known))
    return tables, facts, known


def _client(server: FakeLLMServer, provider: str, known, tmp_path: Path, **config) -> GuardedLLMClient:
    url = server.openai_url if provider == "openai" else server.anthropic_url
    settings = {"timeout_s": 5.0, "max_retries": 0} | config
    return GuardedLLMClient(
        make_provider(ProviderConfig(provider, f"{provider}-test-model", url, **settings)),
        PIIGuard(known),
        cache_dir=tmp_path / "cache",
        log_path=tmp_path / "llm_calls.jsonl",
        prices_per_million={"input": 3.0, "output": 15.0},
    )


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_planted_pii_never_leaves(planted, provider: str, tmp_path: Path) -> None:
    _tables, facts, known = planted
    assert "budget is approved" in facts.notes and "[EMAIL]" in facts.notes  # the note is used, scrubbed
    reply = f"The deal is at the {facts.facts['stage']} stage; the budget is approved."
    with FakeLLMServer(reply=reply) as server:
        writer = NarrativeWriter(_client(server, provider, known, tmp_path))
        narratives = [writer.write(kind, facts) for kind in KINDS]
    assert len(server.requests) == len(KINDS) and all(n.source == provider for n in narratives)
    sent = "\n".join(r["raw"] for r in server.requests)
    for secret in (EMAIL, "acme-example", PHONE, "555 010 0199", "Ivan", "Silva"):
        assert secret not in sent
    log = (tmp_path / "llm_calls.jsonl").read_text()
    for secret in (EMAIL, "Silva", SECRET, "budget"):
        assert secret not in log  # no PII, no key, no prompt text in the cost log
    records = [json.loads(line) for line in log.splitlines()]
    assert [r["status"] for r in records] == ["ok"] * 3 and all(r["input_tokens"] > 0 for r in records)
    assert records[0]["cost_usd"] == pytest.approx(
        (records[0]["input_tokens"] * 3.0 + records[0]["output_tokens"] * 15.0) / 1e6
    )


def test_guard_refuses_before_sending(planted, tmp_path: Path) -> None:
    _, facts, known = planted
    leaky = dataclasses.replace(facts, notes=f"call {NAME} on {PHONE} or mail {EMAIL}")  # an unscrubbed fact
    with FakeLLMServer(reply="anything") as server:
        writer = NarrativeWriter(_client(server, "openai", known, tmp_path))
        narrative = writer.write("summary", leaky)
    assert server.requests == []  # nothing reached the network edge
    assert narrative.source == "offline" and "PII" in (narrative.fallback_reason or "")
    assert EMAIL not in (narrative.fallback_reason or "") and NAME not in (narrative.fallback_reason or "")
    assert json.loads((tmp_path / "llm_calls.jsonl").read_text())["status"] == "refused_pii"
    with pytest.raises(PIILeakError):
        PIIGuard().check(f"contact {EMAIL}")
    PIIGuard(known).check(SYSTEM, build_prompt("risk", facts))  # the real prompts pass


def test_retry_then_cache(planted, tmp_path: Path) -> None:
    _, facts, known = planted
    with FakeLLMServer(reply="The deal is in proposal.", fail_first=1) as server:
        client = _client(server, "anthropic", known, tmp_path, max_retries=2)
        first = NarrativeWriter(client).write("summary", facts)
        assert len(server.requests) == 2 and first.source == "anthropic"  # one 500, one retry
        again = NarrativeWriter(client).write("summary", facts)
        assert len(server.requests) == 2 and again.text == first.text  # served from the cache
    records = [json.loads(line) for line in (tmp_path / "llm_calls.jsonl").read_text().splitlines()]
    assert [r["cached"] for r in records] == [False, True] and records[1]["cost_usd"] == 0.0


def test_timeout_falls_back_to_offline(planted, tmp_path: Path) -> None:
    _, facts, known = planted
    with FakeLLMServer(reply="late", delay_s=1.5) as server:
        narrative = NarrativeWriter(_client(server, "openai", known, tmp_path, timeout_s=0.2)).write("risk", facts)
    assert narrative.source == "offline" and "APITimeoutError" in (narrative.fallback_reason or "")
    assert narrative.text == offline_narrative("risk", facts).text


def test_grounding_drops_invented_numbers(planted, tmp_path: Path) -> None:
    _, facts, known = planted
    f = facts.facts
    true_days, meetings = f["days_in_stage"], f["activities_last_window"]["meeting"]
    reply = (
        f"The deal has been {true_days} days in {f['stage']}. It logged {meetings + 7} meetings last month. "
        f"Its win chance is 87%. The last activity was {f['days_since_last_activity']} days ago."
    )
    with FakeLLMServer(reply=reply) as server:
        narrative = NarrativeWriter(_client(server, "openai", known, tmp_path)).write("summary", facts)
    assert narrative.source == "openai"
    assert f"{true_days} days in" in narrative.text and "87%" not in narrative.text
    assert [d["unsupported"] for d in narrative.dropped] == [[str(meetings + 7)], ["87%"]]
    with FakeLLMServer(reply="It will close in 12 days at 95%.") as server:  # nothing grounded: offline
        fallback = NarrativeWriter(_client(server, "openai", known, tmp_path / "other")).write("summary", facts)
    assert fallback.source == "offline" and fallback.dropped


@pytest.mark.parametrize(
    ("sentence", "ok"),
    [
        ("Worth $65,723.", True),
        ("Worth about 66k.", True),
        ("Worth 70k.", False),
        ("Won 35% of deals.", True),
        ("Won 36% of deals.", False),
        ("Three meetings.", True),
        ("Four meetings.", False),
        ("Closes 2025-03-01.", True),
        ("Closes 2025-04-01.", False),
    ],
)
def test_grounding_rules(sentence: str, ok: bool) -> None:
    facts = {"value": 65723.2, "win_rate": 0.35, "meetings": 3, "close_date": "2025-03-01"}
    assert ground(sentence, facts).fully_grounded is ok


def test_offline_default_is_grounded_and_sends_nothing(planted) -> None:
    _, facts, _ = planted
    with_similar = DealFacts(
        facts.opportunity_id,
        facts.facts
        | {
            "similar_won_deals": {
                "count": 4,
                "mean_next_window_activities": {t: 2.25 for t in facts.facts["activities_last_window"]},
                "median_days_to_next_stage": 11.5,
            }
        },
        facts.notes,
    )
    for deal in (facts, with_similar):
        for kind in KINDS:
            narrative = NarrativeWriter().write(kind, deal)
            assert narrative.source == "offline" and narrative.text
            assert ground(narrative.text, deal.facts).fully_grounded, narrative.text
    assert "2.25 meetings" in NarrativeWriter().write("next_steps", with_similar).text


def test_facts_are_point_in_time_and_checked(planted) -> None:
    tables, facts, _ = planted
    later = tables.activities[
        (tables.activities["related_id"] == facts.opportunity_id) & (tables.activities["created_at"] > AS_OF)
    ]
    past = tables.activities[
        (tables.activities["related_id"] == facts.opportunity_id) & (tables.activities["created_at"] <= AS_OF)
    ]
    assert facts.facts["activities_total"] == len(past) and (later.empty or len(later) > 0)
    with pytest.raises(DealFactsError, match="unknown or not created yet"):
        deal_facts(tables, "nope", AS_OF, scrubber_for_crm(tables))


def test_insights_command_offline_and_openai(tmp_path: Path) -> None:
    from fulqrun_ml.errors import FulqrunMLError
    from fulqrun_ml.insights.commands import main as insights_main

    search = tmp_path / "search.yaml"
    search.write_text(json.dumps({"simulate": {"n_opportunities": 60, "n_companies": 20, "n_reps": 3, "seed": 4}}))
    common = ["--search-config", str(search), "--kind", "summary"]
    assert insights_main([*common, "--out", str(tmp_path / "offline.json")]) == 0
    offline = json.loads((tmp_path / "offline.json").read_text())
    assert offline["narratives"][0]["source"] == "offline"
    config = tmp_path / "insights.yaml"
    config.write_text(json.dumps({"cache_dir": str(tmp_path / "c"), "log_path": str(tmp_path / "log.jsonl")}))
    with FakeLLMServer(reply=f"The deal is {offline['facts']['deal_age_days']} days old.") as server:
        args = ["--config", str(config), "--provider", "openai", "--model", "m", "--base-url", server.openai_url]
        assert insights_main([*common, *args, "--out", str(tmp_path / "llm.json")]) == 0
    assert len(server.requests) == 1
    assert json.loads((tmp_path / "llm.json").read_text())["narratives"][0]["source"] == "openai"
    with pytest.raises(FulqrunMLError, match="needs a model"):
        insights_main([*common, "--config", str(config), "--provider", "anthropic"])
