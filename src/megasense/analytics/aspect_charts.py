"""The charts and tables of aspects and brands, shared by ``report.html`` and the dashboard.

Each ``*_figure`` builds a plotly figure from an analysis table (None when the table is empty or
missing): sentiment shares per aspect or brand (stacked bars, the most mentioned first), share of voice
over time, and brand co-mentions (a heatmap). ``examples_html`` is the table of example sentences
beside them, HTML-escaped. The report renders the figures as HTML; the dashboard sends their JSON.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd

COLORS = {"positive": "#2e9d5b", "neutral": "#9aa0a6", "negative": "#d64545"}
MAX_SHOWN = 25


def _has(table: pd.DataFrame | None) -> bool:
    return table is not None and not table.empty


def shares_figure(go, table: pd.DataFrame | None, name: str):
    """Stacked bars: each aspect's (or brand's) share of positive, neutral and negative mentions."""
    if not _has(table):
        return None
    top = table.sort_values("mentions", ascending=False).head(MAX_SHOWN).iloc[::-1]
    labels = [f"{n} ({m:,})" for n, m in zip(top[name], top["mentions"])]
    fig = go.Figure()
    for label, color in COLORS.items():
        fig.add_trace(go.Bar(y=labels, x=top[label].fillna(0), name=label, orientation="h", marker_color=color))
    fig.update_layout(barmode="stack", xaxis={"title": "share of mentions", "tickformat": ".0%"})
    return fig


def voice_figure(go, brands: pd.DataFrame | None, series: pd.DataFrame | None):
    """Share of voice: per period (lines) when the analysis has dates, else overall (bars)."""
    if _has(series):
        fig = go.Figure()
        for brand, part in series.groupby("brand", sort=True):
            part = part.sort_values("period")
            fig.add_trace(go.Scatter(x=part["period"], y=part["share_of_voice"], mode="lines+markers", name=brand))
        fig.update_layout(yaxis={"title": "share of brand mentions", "tickformat": ".0%"})
        return fig
    if not _has(brands):
        return None
    fig = go.Figure(go.Bar(x=brands["brand"], y=brands["share_of_voice"]))
    fig.update_layout(yaxis={"title": "share of brand mentions", "tickformat": ".0%"})
    return fig


def comention_figure(go, pairs: pd.DataFrame | None):
    """Documents naming both brands, as a symmetric heatmap."""
    if not _has(pairs):
        return None
    names = sorted(set(pairs["brand_a"]) | set(pairs["brand_b"]))
    grid = pd.DataFrame(0, index=names, columns=names)
    for a, b, n in zip(pairs["brand_a"], pairs["brand_b"], pairs["documents"]):
        grid.loc[a, b] = grid.loc[b, a] = int(n)
    return go.Figure(go.Heatmap(z=grid.values, x=names, y=names, colorscale="Blues", hovertemplate="%{z} documents"))


def examples_rows(table: pd.DataFrame | None, name: str) -> list[dict[str, Any]]:
    """Per aspect or brand: its forms, counts, net sentiment and example sentences (plain dicts)."""
    if not _has(table):
        return []
    rows = []
    for row in table.sort_values("mentions", ascending=False).head(MAX_SHOWN).to_dict("records"):
        net = row.get("net_sentiment")
        rows.append(
            {
                "name": str(row[name]),
                "forms": str(row["forms"]),
                "mentions": int(row["mentions"]),
                "documents": int(row["documents"]),
                "share_of_voice": float(row["share_of_voice"]),
                "net_sentiment": None if net is None or net != net else float(net),
                "examples": json.loads(row["examples"] or "[]"),
            }
        )
    return rows


def examples_html(rows: list[dict[str, Any]], name: str) -> str | None:
    if not rows:
        return None
    head = [name, "forms", "mentions", "documents", "share of voice", "net sentiment", "example sentences"]
    body = []
    for r in rows:
        net = "–" if r["net_sentiment"] is None else f"{r['net_sentiment']:+.2f}"
        examples = "".join(
            f'<p class="{"pos" if e["sentiment"] == "positive" else "neg" if e["sentiment"] == "negative" else ""}">'
            f"{html.escape(e['sentence'])}</p>"
            for e in r["examples"]
        )
        cells = [f"<b>{html.escape(r['name'])}</b>", html.escape(r["forms"]), f"{r['mentions']:,}"]
        cells += [f"{r['documents']:,}", f"{r['share_of_voice']:.1%}", net, examples]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    caption = (
        "<p>Sentiment toward each one: every sentence naming it is read with it as the aspect "
        "(green: positive, red: negative toward it); net sentiment = positive share - negative share.</p>"
    )
    return f'{caption}<table class="{name}s"><tr>{header}</tr>' + "".join(body) + "</table>"


def aspect_sections(go, tables: dict[str, pd.DataFrame], render) -> list[tuple[str, str | None]]:
    """(title, HTML) of the report's aspect and brand sections; ``render(fig)`` turns a figure into HTML."""

    def drawn(fig):
        return render(fig) if fig is not None else None

    brands = tables.get("brands")
    return [
        ("Aspects", drawn(shares_figure(go, tables.get("aspects"), "aspect"))),
        ("Aspects: examples", examples_html(examples_rows(tables.get("aspects"), "aspect"), "aspect")),
        ("Brands: sentiment toward each", drawn(shares_figure(go, brands, "brand"))),
        ("Share of voice", drawn(voice_figure(go, brands, tables.get("brand_timeseries")))),
        ("Brand co-mentions", drawn(comention_figure(go, tables.get("brand_comentions")))),
        ("Brands: comparison", examples_html(examples_rows(brands, "brand"), "brand")),
    ]
