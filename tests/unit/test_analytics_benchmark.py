"""`fulqrun-ml analytics benchmark`: DP peer win rates pooled over organisations.

The CRM has three organisations (three simulated CRMs written into one export), so the peer pool can visibly
include or exclude the caller. Exact counts are checked against the closed deals of the raw tables; the noise
against Laplace(2/epsilon) over many segments and draws; every bad input against exit status 2 and a one-line
message naming the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.analytics.benchmark import OTHER, decided_with_org, peer_benchmark
from fulqrun_ml.analytics.commands import simulated_tables
from fulqrun_ml.data.contract import CRMTables, stack_organizations
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.data.vocabulary import CLOSED_STAGES

INDUSTRIES = ["software", "financial_services", "healthcare", "manufacturing", "retail", "education"]
SIZES = {"Org A": (160, 40, 4, 1), "Org B": (120, 30, 3, 2), "Org C": (100, 25, 3, 3)}


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> tuple[Path, CRMTables, dict[str, str]]:
    """(export directory, its tables, organisation id by name)."""
    parts = [
        simulate_crm(n_opportunities=n, n_companies=c, n_reps=r, seed=s, organization_name=name).tables
        for name, (n, c, r, s) in SIZES.items()
    ]
    tables = stack_organizations(parts)
    out = write_crm_directory(tables, tmp_path_factory.mktemp("crm") / "export")
    return out, tables, dict(zip(tables.organizations["name"], tables.organizations["id"].astype(str), strict=True))


def _closed_ids(tables: CRMTables, orgs: set[str]) -> int:
    """Independent of decided_deals: deals whose current stage is closed, in these organisations."""
    opps = tables.opportunities
    return int((opps["stage"].isin(CLOSED_STAGES) & opps["organization_id"].astype(str).isin(orgs)).sum())


def _report(run_cli, crm, *args: str) -> dict:
    code, out, err = run_cli("analytics", "benchmark", "--crm", str(crm[0]), *args)
    assert code == 0, err
    return json.loads(out)


def _rows(report: dict) -> pd.DataFrame:
    return pd.DataFrame(report["segments"]).set_index("segment")


def test_exact_mode_says_so_and_counts_every_decided_deal(run_cli, crm) -> None:
    _, tables, orgs = crm
    report = _report(run_cli, crm, "--set", "dp.epsilon=null")
    assert report["privacy"] == "none (exact counts)" and report["dp"] is None
    assert report["organisations_pooled"] == 3
    rows = _rows(report)
    assert list(rows.index) == [*INDUSTRIES, OTHER]
    assert int(rows["peer_deals"].sum()) == _closed_ids(tables, set(orgs.values()))
    truth = decided_with_org(tables).groupby("industry")["won"].agg(["size", "sum"])
    assert rows.loc[INDUSTRIES, "peer_deals"].tolist() == truth["size"].reindex(INDUSTRIES).tolist()
    assert rows.loc[INDUSTRIES, "peer_wins"].tolist() == truth["sum"].reindex(INDUSTRIES).tolist()
    np.testing.assert_allclose(rows["peer_win_rate"].dropna(), (rows["peer_wins"] / rows["peer_deals"]).dropna())


def test_noise_is_laplace_with_scale_two_over_epsilon(crm) -> None:
    """Over 11 country segments x 2 counts x 100 draws the mean absolute error is b = 2/eps, centred on zero."""
    deals = decided_with_org(crm[1])
    segments = ["US", "CA", "GB", "DE", "FR", "AU", "JP", "SG", "BR", "MX", OTHER]
    exact = peer_benchmark(deals, "country", segments, None, None)
    truth = _rows(exact)[["peer_deals", "peer_wins"]].to_numpy(dtype=float)
    epsilon = 0.5
    errors = []
    for seed in range(100):
        released = _rows(peer_benchmark(deals, "country", segments, epsilon, seed))
        errors.append(released[["peer_deals", "peer_wins"]].to_numpy() - truth)
    errors = np.asarray(errors)
    assert np.mean(np.abs(errors)) == pytest.approx(2.0 / epsilon, rel=0.08)
    assert abs(np.mean(errors)) < 0.4  # unbiased: 3.3 standard errors of the mean of 2,200 draws
    assert np.all(errors != 0)


def test_a_configured_seed_reproduces_a_release_and_no_report_holds_a_seed(run_cli, crm) -> None:
    first = _report(run_cli, crm, "--set", "dp.epsilon=2", "dp.seed=1234")
    assert (
        first["privacy"].startswith("epsilon-DP") and first["dp"]["noise_seed"] == "configured (secret, not recorded)"
    )
    assert first["dp"]["epsilon"] == 2.0 and first["dp"]["delta"] == 0.0
    assert first["dp"]["l1_sensitivity"] == 2.0 and first["dp"]["laplace_scale"] == 1.0
    assert "1234" not in json.dumps(first)  # the seed would let any reader subtract the noise
    again = _report(run_cli, crm, "--set", "dp.epsilon=2", "dp.seed=1234")
    assert again["segments"] == first["segments"]
    fresh = _report(run_cli, crm, "--set", "dp.epsilon=2")
    assert fresh["dp"]["noise_seed"] == "fresh OS entropy" and fresh["segments"] != first["segments"]


def test_with_org_the_peer_pool_is_the_other_organisations(run_cli, crm) -> None:
    _, tables, orgs = crm
    me = orgs["Org A"]
    report = _report(run_cli, crm, "--org", me, "--set", "dp.epsilon=null")
    assert report["organisations_pooled"] == 2 and me in report["peers"] and "except" in report["peers"]
    rows = _rows(report)
    assert int(rows["peer_deals"].sum()) == _closed_ids(tables, {orgs["Org B"], orgs["Org C"]})
    assert int(rows["own_decided"].sum()) == _closed_ids(tables, {me})
    deals = decided_with_org(tables)
    peers = deals[deals["organization_id"] != me].groupby("industry").size().reindex(INDUSTRIES, fill_value=0)
    assert rows.loc[INDUSTRIES, "peer_deals"].tolist() == peers.tolist()
    seen = rows.dropna(subset=["own_win_rate"])
    assert (seen["own_low"] <= seen["own_win_rate"]).all() and (seen["own_win_rate"] <= seen["own_high"]).all()
    np.testing.assert_allclose(seen["gap"], seen["own_win_rate"] - seen["peer_win_rate"])
    private = _rows(_report(run_cli, crm, "--org", me, "--set", "dp.seed=5"))
    assert private["own_decided"].tolist() == rows["own_decided"].tolist()  # the caller's own rates are exact
    assert np.all(np.abs(private["peer_deals"] - rows["peer_deals"]) < 40)  # |Laplace(2)| > 40: p ~ 2e-9


def test_the_segment_list_is_the_public_one_even_for_empty_segments(run_cli, crm) -> None:
    """A listed segment with no deals is still released (noised); unlisted values are counted as `other`."""
    _, tables, orgs = crm
    listed = "segments.industry=[software,healthcare,aerospace]"
    exact = _rows(_report(run_cli, crm, "--set", listed, "dp.epsilon=null"))
    assert list(exact.index) == ["software", "healthcare", "aerospace", OTHER]
    assert exact.loc["aerospace", "peer_deals"] == 0 and pd.isna(exact.loc["aerospace", "peer_win_rate"])
    unlisted = ~decided_with_org(tables)["industry"].isin(["software", "healthcare"])
    assert exact.loc[OTHER, "peer_deals"] == unlisted.sum() > 0
    assert exact["peer_deals"].sum() == _closed_ids(tables, set(orgs.values()))
    noised = _rows(_report(run_cli, crm, "--set", listed, "dp.seed=3"))
    assert list(noised.index) == list(exact.index) and noised.loc["aerospace", "peer_deals"] != 0


def test_the_default_simulated_crm_has_several_organisations() -> None:
    tables = simulated_tables({"organizations": 2, "n_opportunities": 120, "n_companies": 25, "n_reps": 4, "seed": 5})
    assert tables.organizations["id"].nunique() == 2 and tables.opportunities["organization_id"].nunique() == 2
    assert tables.opportunities["id"].is_unique and tables.companies["id"].is_unique


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "dp.epsilon=0"], "dp.epsilon: must be a positive finite number or null"),
        (["--set", "dp.epsilon=-1"], "dp.epsilon: must be a positive finite number or null"),
        (["--set", "dp.epsilon=lots"], "dp.epsilon: must be a positive finite number or null (no privacy), got 'lots'"),
        (["--set", "dp.epsilon=.inf"], "dp.epsilon: must be a positive finite number or null"),
        (["--set", "dp.epsilon=true"], "dp.epsilon: must be a positive finite number or null"),
        (["--set", "dp.seed=-3"], "dp.seed: must be a non-negative integer or null"),
        (["--set", "segment=planet"], "segment: unknown segment column 'planet'"),
        (["--set", "segment=country", "segments.country=null"], "segments.country: give the public list"),
        (["--org", "no-such-org"], "--org: no organisation 'no-such-org' in the CRM"),
    ],
)
def test_bad_input_exits_2_naming_the_field(run_cli, crm, args, message) -> None:
    code, out, err = run_cli("analytics", "benchmark", "--crm", str(crm[0]), *args)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_a_config_without_epsilon_is_refused_not_silently_exact(run_cli, crm, tmp_path) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text("segment: industry\nsegments:\n  industry: [software]\n")
    code, _, err = run_cli("analytics", "benchmark", "--crm", str(crm[0]), "--config", str(config))
    assert code == 2 and "dp.epsilon: missing" in err


def test_out_is_written_atomically(run_cli, crm, tmp_path) -> None:
    out = tmp_path / "bench.json"
    code, printed, _ = run_cli("analytics", "benchmark", "--crm", str(crm[0]), "--out", str(out))
    assert code == 0 and printed.strip() == f"wrote {out}"
    assert json.loads(out.read_text())["dp"]["epsilon"] == 1.0
