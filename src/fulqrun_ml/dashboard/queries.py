"""Every number the dashboard shows, as a SQL query over the precomputed warehouse, scoped to organisations.

Why one class: org scoping must not depend on each page remembering it. `ScopedWarehouse` is the only way a
page reads data, and every query it runs carries `organization_id IN (<allowed>)` built here from the scope
fixed when the app starts; a filter naming another organisation narrows to nothing instead of widening.
Filters are bound as parameters, never formatted into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from fulqrun_ml.dashboard.warehouse import STAGES

PERIODS = {"3m": 3, "6m": 6, "12m": 12, "24m": 24, "all": None}
DIMENSIONS = ("organization", "region", "rep", "segment")


@dataclass(frozen=True)
class Filters:
    """What the filter bar selected; an empty tuple means 'all that the scope allows'."""

    organization: tuple[str, ...] = ()
    region: tuple[str, ...] = ()
    rep: tuple[str, ...] = ()
    segment: tuple[str, ...] = ()
    period: str = "12m"

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Filters:
        def as_tuple(v: Any) -> tuple[str, ...]:
            if v is None or v == "":
                return ()
            return tuple(str(x) for x in (v if isinstance(v, list | tuple) else [v]))

        return cls(*(as_tuple(values.get(d)) for d in DIMENSIONS), period=str(values.get("period") or "12m"))


@dataclass
class ScopedWarehouse:
    """Queries over the warehouse, restricted to `allowed_orgs` (organisation ids; None = every organisation)."""

    con: duckdb.DuckDBPyConnection
    extracted_at: pd.Timestamp
    allowed_orgs: tuple[str, ...] | None = None
    scores: pd.DataFrame | None = None  # opportunity_id, model_probability (the served model, scored offline)
    _lock: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import threading

        self._lock = threading.Lock()  # one DuckDB connection; Dash serves requests from threads
        if self.allowed_orgs is not None:
            known = set(self.con.sql("SELECT DISTINCT organization_id FROM dims").df()["organization_id"])
            named = set(self.con.sql("SELECT DISTINCT organization FROM dims").df()["organization"])
            unknown = [o for o in self.allowed_orgs if o not in known and o not in named]
            if unknown:
                raise ValueError(f"--organization {unknown[0]!r}: no such organisation in the CRM")
            by_name = self.con.sql("SELECT DISTINCT organization_id, organization FROM dims").df()
            ids = set(by_name[by_name["organization"].isin(self.allowed_orgs)]["organization_id"])
            self.allowed_orgs = tuple(sorted(ids | (set(self.allowed_orgs) & known)))

    def sql(self, query: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self._lock:
            cursor = self.con.cursor()
            try:
                if self.scores is not None:
                    cursor.register("scores", self.scores)
                return cursor.execute(query, params or []).df()
            finally:
                cursor.close()

    @staticmethod
    def table(name: str, filters: Filters, dimensions: tuple[str, ...] = ()) -> str:
        """The rep-free rollup of `name` when neither the filters nor the grouping need the rep."""
        if filters.rep or "rep" in dimensions or name not in ("closed_monthly", "funnel", "leads_monthly"):
            return name
        return f"{name}_by_team"

    def where(self, filters: Filters, month_col: str | None = "month") -> tuple[str, list[Any]]:
        """The WHERE clause of a query: the scope first, then the filters, all as parameters."""
        clauses, params = ["TRUE"], []
        if self.allowed_orgs is not None:
            clauses.append("organization_id IN (SELECT unnest(?))")
            params.append(list(self.allowed_orgs))
        selected = (filters.organization, filters.region, filters.rep, filters.segment)
        for dim, values in zip(DIMENSIONS, selected, strict=True):
            if values:
                column = "organization_id" if dim == "organization" else dim
                clauses.append(f"{column} IN (SELECT unnest(?))")
                params.append(list(values))
        months = PERIODS.get(filters.period)
        if month_col and months is not None:
            clauses.append(f"{month_col} >= ?")
            params.append((self.extracted_at.tz_localize(None) - pd.DateOffset(months=months)).date())
        return " AND ".join(clauses), params

    # ---- filter menus ----
    def options(self) -> dict[str, list[dict[str, str]]]:
        where, params = self.where(Filters(), month_col=None)
        dims = self.sql(f"SELECT * FROM dims WHERE {where}", params)
        orgs = dims[["organization_id", "organization"]].drop_duplicates().sort_values("organization")
        out = {"organization": [{"label": n, "value": i} for i, n in orgs.itertuples(index=False)]}
        for dim in ("region", "rep", "segment"):
            out[dim] = [{"label": v, "value": v} for v in sorted(dims[dim].dropna().unique())]
        return out

    # ---- forecast and pipeline ----
    def won_by_month(self, filters: Filters) -> pd.DataFrame:
        where, params = self.where(filters)
        return self.sql(
            f"SELECT month, sum(value) FILTER (WHERE status = 'won') AS won_value, "
            f"sum(deals) FILTER (WHERE status = 'won') AS won, sum(deals) AS closed "
            f"FROM {self.table('closed_monthly', filters)} WHERE {where} GROUP BY month ORDER BY month",
            params,
        ).fillna(0.0)

    def open_deals(self, filters: Filters, limit: int | None = None, opportunity_id: str | None = None) -> pd.DataFrame:
        """Open deals, largest first, with the model's probability where the served model scored them (else the
        rep's); `limit` keeps the largest, `opportunity_id` one deal (still within the scope and filters)."""
        where, params = self.where(filters, month_col=None)
        if opportunity_id is not None:
            where += " AND d.opportunity_id = ?"
            params.append(str(opportunity_id))
        join = self._probability_join()
        return self.sql(
            f"SELECT d.*, s.model_probability, coalesce(s.model_probability, d.rep_probability) AS probability "
            f"FROM open_deals d {join} WHERE {where} ORDER BY d.value DESC, d.opportunity_id"
            + (f" LIMIT {int(limit)}" if limit is not None else ""),
            params,
        )

    def _probability_join(self) -> str:
        if self.scores is not None:
            return "LEFT JOIN scores s USING (opportunity_id)"
        return (
            "LEFT JOIN (SELECT NULL::VARCHAR AS opportunity_id, NULL::DOUBLE AS model_probability) s "
            "USING (opportunity_id)"
        )

    def open_summary(self, filters: Filters, below: float = 0.3) -> dict[str, float]:
        """Counts and sums over the open deals, in DuckDB (a 1M-deal CRM has ~50k open deals)."""
        where, params = self.where(filters, month_col=None)
        row = self.sql(
            "SELECT count(*) AS deals, coalesce(sum(value), 0) AS value, coalesce(sum(p * value), 0) AS expected, "
            "count(*) FILTER (WHERE p < ?) AS below_deals, "
            "coalesce(sum(value) FILTER (WHERE p < ?), 0) AS below_value, "
            "count(*) FILTER (WHERE days_overdue > 0) AS slipped_deals, "
            "coalesce(sum(value) FILTER (WHERE days_overdue > 0), 0) AS slipped_value "
            f"FROM (SELECT d.*, coalesce(s.model_probability, d.rep_probability) AS p FROM open_deals d "
            f"{self._probability_join()} WHERE {where})",
            [below, below, *params],
        ).iloc[0]
        return {k: float(v) for k, v in row.items()}

    def probability_histogram(self, filters: Filters, bins: int = 20) -> pd.DataFrame:
        """Open deals per probability bin, the model's (else the rep's) and the rep's, counted in DuckDB."""
        where, params = self.where(filters, month_col=None)
        counts = self.sql(
            f"WITH x AS (SELECT coalesce(s.model_probability, d.rep_probability) AS p, d.rep_probability AS r "
            f"FROM open_deals d {self._probability_join()} WHERE {where}) "
            f"SELECT 'probability' AS kind, least(floor(p * {bins}), {bins - 1})::INTEGER AS bin, count(*) AS deals "
            f"FROM x GROUP BY ALL UNION ALL "
            f"SELECT 'rep', least(floor(r * {bins}), {bins - 1})::INTEGER, count(*) FROM x GROUP BY ALL",
            params,
        )
        table = counts.pivot_table(index="bin", columns="kind", values="deals", aggfunc="sum", fill_value=0)
        table = table.reindex(index=range(bins), columns=["probability", "rep"], fill_value=0).reset_index()
        table.insert(1, "bin_low", table["bin"] / bins)
        table.insert(2, "bin_high", (table["bin"] + 1) / bins)
        return table.drop(columns="bin")

    def forecast_moments(self, filters: Filters, multiplier: float, commit_probability: float) -> pd.DataFrame:
        """Per close month (overdue deals in the extraction month): deals, sum(p v), sum(p (1-p) v^2), commit
        and best case, with p = the deal's probability x `multiplier`, clipped to [0, 1]."""
        where, params = self.where(filters, month_col=None)
        return self.sql(
            "SELECT month, count(*) AS deals, sum(p * value) AS expected, "
            "sum(p * (1 - p) * value * value) AS variance, "
            "coalesce(sum(value) FILTER (WHERE p >= ?), 0) AS commit, sum(value) AS best_case FROM ("
            "SELECT d.value, least(greatest(coalesce(s.model_probability, d.rep_probability) * ?, 0), 1) AS p, "
            "greatest(date_trunc('month', d.close_date), date_trunc('month', ?::TIMESTAMPTZ))::DATE AS month "
            f"FROM open_deals d {self._probability_join()} WHERE {where}) GROUP BY month ORDER BY month",
            [commit_probability, float(multiplier), self.extracted_at.to_pydatetime(), *params],
        )

    def win_rate(self, filters: Filters) -> dict[str, float]:
        where, params = self.where(filters)
        row = self.sql(
            f"SELECT sum(deals) FILTER (WHERE status = 'won') AS won, sum(deals) AS closed, "
            f"sum(value) FILTER (WHERE status = 'won') AS won_value, "
            f"sum(cycle_days) FILTER (WHERE status = 'won') AS won_cycle FROM {self.table('closed_monthly', filters)} "
            f"WHERE {where}",
            params,
        ).iloc[0]
        won, closed = float(row["won"] or 0), float(row["closed"] or 0)
        return {
            "won": won,
            "closed": closed,
            "win_rate": won / closed if closed else float("nan"),
            "avg_won_value": float(row["won_value"] or 0) / won if won else float("nan"),
            "avg_cycle_days": float(row["won_cycle"] or 0) / won if won else float("nan"),
        }

    def funnel(self, filters: Filters) -> pd.DataFrame:
        where, params = self.where(filters)
        cols = ", ".join(f"sum(reached_{s})::DOUBLE AS {s}" for s in STAGES)
        row = self.sql(f"SELECT {cols} FROM {self.table('funnel', filters)} WHERE {where}", params).fillna(0.0).iloc[0]
        frame = pd.DataFrame({"stage": list(STAGES), "deals": [float(row[s]) for s in STAGES]})
        first = frame["deals"].iloc[0]
        frame["share_of_created"] = frame["deals"] / first if first else 0.0
        return frame

    def aging(self, filters: Filters) -> pd.DataFrame:
        where, params = self.where(filters, month_col=None)
        return self.sql(
            "SELECT stage, CASE WHEN age_days < 30 THEN '0-29 d' WHEN age_days < 90 THEN '30-89 d' "
            "WHEN age_days < 180 THEN '90-179 d' ELSE '180+ d' END AS age, count(*) AS deals, sum(value) AS value "
            f"FROM open_deals WHERE {where} GROUP BY ALL ORDER BY stage, age",
            params,
        )

    def slipped(self, filters: Filters, limit: int | None = None) -> pd.DataFrame:
        """Open deals whose expected close date has passed: they slipped out of the period they were due in."""
        where, params = self.where(filters, month_col=None)
        return self.sql(
            f"SELECT opportunity_id, organization, region, rep, segment, stage, value, close_date, days_overdue "
            f"FROM open_deals WHERE {where} AND days_overdue > 0 ORDER BY value DESC, opportunity_id"
            + (f" LIMIT {int(limit)}" if limit is not None else ""),
            params,
        )

    def slipped_by_segment(self, filters: Filters) -> pd.DataFrame:
        where, params = self.where(filters, month_col=None)
        return self.sql(
            f"SELECT segment, count(*) AS deals, sum(value) AS value FROM open_deals WHERE {where} "
            "AND days_overdue > 0 GROUP BY segment ORDER BY value DESC",
            params,
        )

    # ---- accounts (churn and expansion) ----
    def accounts(self, filters: Filters) -> pd.DataFrame:
        """Customers in scope (a won deal), largest recent revenue first; the account models score these."""
        where, params = self.where(filters, month_col=None)
        return self.sql(
            "SELECT company_id, organization, region, rep, segment, won_value_365d, won_deals, open_value "
            f"FROM accounts WHERE {where} ORDER BY won_value_365d DESC, company_id",
            params,
        )

    # ---- leads ----
    def leads(self, filters: Filters) -> pd.DataFrame:
        where, params = self.where(filters)
        return self.sql(
            f"SELECT source, sum(leads) AS leads, sum(leads) FILTER (WHERE status = 'converted') AS converted, "
            f"sum(leads * mean_score) / sum(leads) AS mean_score FROM {self.table('leads_monthly', filters)} "
            f"WHERE {where} "
            "GROUP BY source ORDER BY leads DESC",
            params,
        ).fillna({"converted": 0})

    # ---- the custom builder's generic aggregate ----
    def aggregate(self, table: str, expression: str, dimensions: list[str], filters: Filters) -> pd.DataFrame:
        """`expression` and `table` come from the builder's whitelist (views.METRICS), never from the user."""
        where, params = self.where(filters, month_col="month" if table != "open_deals" else None)
        group = ", ".join(dimensions)
        select = f"{group}, " if group else ""
        by = f"GROUP BY {group} ORDER BY {group}" if group else ""
        source = self.table(table, filters, tuple(dimensions))
        return self.sql(f"SELECT {select}{expression} AS value FROM {source} WHERE {where} {by}", params)
