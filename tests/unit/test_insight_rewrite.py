"""The insight generator's optional LLM rewrite: accepted only when it keeps every number of the template.

The real openai/anthropic SDK clients talk to a local fake server (the network edge); the fake "rewords" the
sentence it is sent with a function, so the tests control whether the numbers survive.
"""

from __future__ import annotations

import re

import pytest

from fulqrun_ml.dashboard.insights import Insight, rewritten
from fulqrun_ml.insights.client import GuardedLLMClient
from fulqrun_ml.insights.pii_guard import PIIGuard
from fulqrun_ml.insights.providers import ProviderConfig, make_provider
from fulqrun_ml.insights.rewrite import number_changes, rewrite_keeping_numbers

from .llm_fake_server import FakeLLMServer

TEMPLATE = (
    "12 open deals worth $1.2M slipped past their close date; the biggest is 3f2a9b1c ($45.3k, proposal, "
    "17 days overdue)."
)


class RewordingServer(FakeLLMServer):
    """Answers with `transform(the user message)`: a stand-in for a model rewording the sentence."""

    def __init__(self, transform) -> None:
        super().__init__()
        self.transform = transform

    def openai_reply(self, body: dict) -> dict:
        self.reply = self.transform(body["messages"][-1]["content"])
        return super().openai_reply(body)


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-not-a-key")


def _client(server: FakeLLMServer) -> GuardedLLMClient:
    config = ProviderConfig(
        provider="openai", model="fake-model", base_url=server.openai_url, max_retries=0, timeout_s=5
    )
    return GuardedLLMClient(make_provider(config), PIIGuard())


@pytest.mark.parametrize(
    ("rewrite", "missing", "extra"),
    [
        ("Twelve open deals ($1.2 million) slipped; biggest 3f2a9b1c at $45.3k, 17 days late.", [], []),
        ("12 open deals worth $1.3M slipped; the biggest is 3f2a9b1c ($45.3k, 17 days overdue).", ["$1.2M"], ["$1.3M"]),
        ("12 open deals worth $1.2M slipped; the biggest is 3f2a9b1c ($45.3k).", ["17"], []),
        ("12 deals, $1.2M, 3f2a9b1c, $45.3k, 17 days, about 4% of pipeline.", [], ["4%"]),
        ("12 deals worth $1,200,000 slipped; 3f2a9b1c ($45.3k, 17 days).", ["$1.2M"], ["$1,200,000"]),
    ],
)
def test_number_changes_name_what_was_dropped_changed_or_added(rewrite, missing, extra):
    assert number_changes(TEMPLATE, rewrite) == (missing, extra)


def test_a_flipped_sign_or_precision_is_a_change():
    assert number_changes("Bookings +5% on May.", "Bookings -5% on May.") == (["+5%"], ["-5%"])
    assert number_changes("Win rate 23.4%.", "Win rate 23%.") == (["23.4%"], ["23%"])


def test_a_rewrite_that_keeps_every_number_is_shown():
    # one provider suffices: both go through the same interface (test_llm_insights.py covers each SDK)
    with RewordingServer(lambda text: "In short: " + text.replace("slipped past their close date", "are late")) as s:
        result = rewrite_keeping_numbers(_client(s), TEMPLATE)
        assert len(s.requests) == 1 and TEMPLATE in s.requests[0]["raw"]
    assert result.source == "openai" and result.rejected is None
    assert result.text.startswith("In short: 12 open deals worth $1.2M are late")


def test_a_rewrite_that_changes_a_number_is_rejected_and_the_template_kept():
    with RewordingServer(lambda text: text.replace("$1.2M", "$1.5M").replace("17 days", "seventeen days")) as s:
        result = rewrite_keeping_numbers(_client(s), TEMPLATE)
    assert result.text == TEMPLATE and result.source == "template"
    assert result.rejected == "rewrite rejected: dropped or changed ['$1.2M']; added ['$1.5M']"


def test_an_unreachable_provider_keeps_the_template_and_says_why():
    server = FakeLLMServer()
    url = server.openai_url  # never started: connection refused
    server.httpd.server_close()
    config = ProviderConfig(provider="openai", model="m", base_url=url, max_retries=0, timeout_s=2)
    result = rewrite_keeping_numbers(GuardedLLMClient(make_provider(config), PIIGuard()), TEMPLATE)
    assert result.text == TEMPLATE and result.rejected.startswith("rewrite not used: openai request failed")


def test_insights_keep_their_numbers_and_record_the_template():
    insight = Insight("slipped", TEMPLATE, {"deals": 12, "value": 1.2e6}, "open_deals WHERE days_overdue > 0")
    assert rewritten([insight], None) == [insight]  # offline: no client, the template as is
    with RewordingServer(lambda text: re.sub(r"^12 open deals", "Twelve open deals", text)) as s:
        (out,) = rewritten([insight], _client(s))
    assert out.text.startswith("Twelve open deals worth $1.2M") and out.writer == "openai"
    assert out.template == TEMPLATE and out.numbers == insight.numbers and out.source == insight.source
