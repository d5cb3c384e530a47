"""The dashboard's building blocks: a chart card with PNG and CSV download, a table, an empty state, a KPI.

Why shared: every page must offer the same guarantees (a labelled chart, PNG through plotly's modebar, a CSV
of exactly the numbers drawn, an empty state naming the command that makes the data), so they live in one
place rather than being re-done per page. The palette is Okabe-Ito, which stays distinguishable under the
common colour-vision deficiencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dash_table, dcc, html

from fulqrun_ml.dashboard.context import Missing

# Okabe & Ito (2008): distinguishable with protanopia, deuteranopia and tritanopia.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
GUIDE = "https://github.com/fulqrun/fulqrun-ml/blob/main/docs/user-guide.md"


@dataclass
class Page:
    """A rendered page: its components, and the table behind each chart (what its CSV download returns)."""

    children: list[Any]
    tables: dict[str, Any] = field(default_factory=dict)  # a DataFrame, or a callable making one on download

    def add_chart(self, chart_id: str, title: str, figure: go.Figure, data: pd.DataFrame, note: str = "") -> None:
        self.tables[chart_id] = data
        self.children.append(chart(chart_id, title, figure, note))

    def add_table(
        self, table_id: str, title: str, data: pd.DataFrame, page_size: int = 15, max_rows: int | None = None
    ) -> None:
        """`max_rows`: how many rows the browser gets (sorting applies to those); the CSV holds every row."""
        self.tables[table_id] = data
        self.children.append(table(table_id, title, data if max_rows is None else data.head(max_rows), page_size))


def style(figure: go.Figure, title: str) -> go.Figure:
    figure.update_layout(
        title={"text": title},
        colorway=PALETTE,
        template="plotly_white",
        margin={"l": 50, "r": 20, "t": 50, "b": 40},
        height=340,
        legend={"orientation": "h", "y": -0.2},
        font={"size": 13},
    )
    return figure


def csv_button(chart_id: str) -> html.Button:
    return html.Button(
        "Download CSV",
        id={"type": "csv", "chart": chart_id},
        className="csv",
        **{"aria-label": f"Download the data of {chart_id} as CSV"},
    )


def chart(chart_id: str, title: str, figure: go.Figure, note: str = "") -> html.Section:
    return html.Section(
        className="card",
        **{"aria-label": title},
        children=[
            dcc.Graph(
                id=f"chart-{chart_id}",
                figure=style(figure, title),
                config={
                    "displaylogo": False,
                    "toImageButtonOptions": {"format": "png", "filename": chart_id, "scale": 2},
                },
            ),
            html.P(note, className="note") if note else None,
            csv_button(chart_id),
        ],
    )


def table(table_id: str, title: str, data: pd.DataFrame, page_size: int = 15) -> html.Section:
    shown = data.copy()
    for column in shown.columns:
        if pd.api.types.is_datetime64_any_dtype(shown[column]):
            shown[column] = shown[column].dt.strftime("%Y-%m-%d")
        elif pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].round(3)
    return html.Section(
        className="card",
        **{"aria-label": title},
        children=[
            html.H2(title),
            dash_table.DataTable(
                id=f"table-{table_id}",
                data=shown.to_dict("records"),
                columns=[{"name": c, "id": c} for c in shown.columns],
                sort_action="native",
                filter_action="native",
                page_size=page_size,
                style_table={"overflowX": "auto"},
                style_cell={"fontFamily": "inherit", "fontSize": 13, "textAlign": "left"},
                style_header={"fontWeight": "bold"},
            ),
            csv_button(table_id),
        ],
    )


def empty(missing: Missing, anchor: str = "") -> html.Div:
    """What a page shows when its source does not exist: what is missing and the command that makes it."""
    return html.Div(
        className="empty",
        role="status",
        children=[
            html.H2("Nothing to show yet"),
            html.P(missing.what),
            html.P(["Produce it with: ", html.Code(missing.command, className="command")]),
        ],
    )


def kpi(label: str, value: str, kpi_id: str) -> html.Div:
    return html.Div(
        className="kpi",
        children=[html.Span(label, className="kpi-label"), html.Strong(value, id=f"kpi-{kpi_id}")],
    )


def kpis(items: list[tuple[str, str, str]]) -> html.Div:
    return html.Div(className="kpis", role="group", children=[kpi(*item) for item in items])


def money(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"${value / size:,.1f}{unit}"
    return f"${value:,.0f}"


def pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"
