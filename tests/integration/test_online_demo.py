"""`fulqrun-ml online demo` (`make run LIVE=1`): stage changes committed in a real PostgreSQL reach a served
prediction by id through the stream worker, Redis and Triton; each deal's probability moves."""

from __future__ import annotations

import pytest

from fulqrun_ml.online.live_update import live_demo, print_demo

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_committed_stage_change_changes_the_served_probability(published, capsys):
    version, _ = published
    shown = live_demo(version, deals=2, timeout_s=30.0)
    assert len(shown) == 2
    for s in shown:
        assert s["ms"] is not None and s["ms"] > 0 and s["before"] != s["after"]
        assert s["to_stage"] != s["from_stage"]
    print_demo(shown)
    assert "served" in capsys.readouterr().out
