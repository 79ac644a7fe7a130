"""The charts and tables of trends and topic structure, shared by ``report.html`` and the dashboard.

Each ``*_figure`` builds a plotly figure from an analysis table (or returns None when the table is
empty): forecasts (history, forecast and its interval band, one series at a time from a menu), the
intertopic distance map (bubble size = documents) and the topic hierarchy (a dendrogram of the merge
tree). The report renders them as HTML; the dashboard sends their JSON to ``Plotly.react``.
``backtest_rows`` and ``emerging_rows`` are the tables beside them, as plain dicts.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics.forecast import MODELS
from megasense.analytics.hierarchy import linkage_of

MAX_SERIES = 12
BAND = "rgba(76, 120, 168, 0.2)"


def _has(table: pd.DataFrame | None) -> bool:
    return table is not None and not table.empty


def forecast_figure(go, forecasts: pd.DataFrame | None):
    """History, forecast and interval of each series; a menu picks the series (all documents' volume first)."""
    if not _has(forecasts):
        return None
    fig = go.Figure()
    keys = list(dict.fromkeys(zip(forecasts["kind"], forecasts["key"], forecasts["metric"], strict=True)))
    keys = keys[:MAX_SERIES]
    buttons, titles = [], []
    for i, (kind, key, metric) in enumerate(keys):
        part = forecasts[(forecasts["kind"] == kind) & (forecasts["key"] == key) & (forecasts["metric"] == metric)]
        part = part.sort_values("period")
        past, ahead = part[part["forecast"].isna()], part[part["forecast"].notna()]
        label, model = str(part["label"].iloc[0]), str(part["model"].iloc[0])
        traces = [  # (rows, column, style): the band's upper edge, its lower edge filled up to it, history, forecast
            (ahead, "upper", {"mode": "lines", "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip"}),
            (ahead, "lower", {"mode": "lines", "line": {"width": 0}, "fill": "tonexty", "fillcolor": BAND}),
            (past, "actual", {"mode": "lines+markers", "line": {"color": "#202124"}}),
            (ahead, "forecast", {"mode": "lines+markers", "line": {"color": "#4c78a8", "dash": "dash"}}),
        ]
        names = ("interval", "interval", "history", f"forecast ({model})")
        for (rows, column, style), name in zip(traces, names, strict=True):
            fig.add_scatter(x=rows["period"], y=rows[column], name=name, visible=i == 0, **style)
        shown = [j // len(traces) == i for j in range(len(traces) * len(keys))]
        titles.append(f"{label}: {metric} ({model})")
        buttons.append(
            {
                "label": f"{label} · {metric}",
                "method": "update",
                "args": [{"visible": shown}, {"title": {"text": titles[-1]}}],
            }
        )
    fig.update_layout(
        title={"text": titles[0]},
        updatemenus=[{"buttons": buttons, "x": 1, "y": 1.2, "xanchor": "right", "yanchor": "top", "direction": "down"}],
        legend={"orientation": "h"},
    )
    return fig


def map_figure(go, topic_map: pd.DataFrame | None):
    """The intertopic distance map: a bubble per topic at its 2-D position, area proportional to documents."""
    if not _has(topic_map):
        return None
    sizes = topic_map["documents"].to_numpy(dtype=float)
    area = 12 + 48 * np.sqrt(sizes / max(sizes.max(), 1))
    fig = go.Figure(
        go.Scatter(
            x=topic_map["x"],
            y=topic_map["y"],
            mode="markers+text",
            text=topic_map["topic"].astype(str),
            customdata=np.stack([topic_map["label"].astype(str), topic_map["documents"]], axis=1),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]} documents<extra></extra>",
            marker={"size": area, "color": "#4c78a8", "opacity": 0.6, "line": {"color": "#202124", "width": 1}},
        )
    )
    fig.update_layout(xaxis={"title": "dimension 1", "zeroline": False}, yaxis={"title": "dimension 2"})
    return fig


def tree_figure(go, tree: pd.DataFrame | None):
    """The topic hierarchy as a dendrogram (leaves: the topics before merging, labelled by their terms)."""
    if not _has(tree) or int(tree["leaf"].astype(bool).sum()) < 2:
        return None
    from scipy.cluster.hierarchy import dendrogram

    leaves = tree[tree["leaf"].astype(bool)].sort_values("node")
    names = [
        f"{lab} → {top}" if lab.split(":")[0] != str(top) else lab
        for lab, top in zip(leaves["label"].astype(str), leaves["topic"], strict=True)
    ]
    drawn = dendrogram(linkage_of(tree), labels=names, no_plot=True, orientation="right")
    fig = go.Figure()
    for ys, xs in zip(drawn["icoord"], drawn["dcoord"], strict=True):
        fig.add_scatter(x=xs, y=ys, mode="lines", line={"color": "#4c78a8"}, hoverinfo="skip", showlegend=False)
    ticks = [5 + 10 * i for i in range(len(drawn["ivl"]))]
    fig.update_layout(
        xaxis={"title": "cosine distance at merge"},
        yaxis={"tickvals": ticks, "ticktext": drawn["ivl"], "automargin": True},
    )
    return fig


def backtest_rows(backtest: pd.DataFrame | None) -> list[dict[str, Any]]:
    """One row per forecast series: the chosen model's backtest MASE beside each baseline's and candidate's."""
    if not _has(backtest):
        return []
    out = []
    for (_, _, label, metric), part in backtest.groupby(["kind", "key", "label", "metric"], sort=False):
        chosen = part[part["chosen"].astype(bool)]
        errors = {m: _num(part.loc[part["model"] == m, "mase"]) for m in MODELS}
        row = {
            "series": str(label),
            "metric": str(metric),
            "model": str(chosen["model"].iloc[0]) if len(chosen) else "",
        }
        row |= {"mase": _num(chosen["mase"]), "smape": _num(chosen["smape"]), "folds": _num(chosen["folds"])}
        row |= {f"mase_{m}": errors[m] for m in MODELS} | {"note": str(part["note"].iloc[0] or "")}
        out.append(row)
    return out


def emerging_rows(emerging: pd.DataFrame | None) -> list[dict[str, Any]]:
    if not _has(emerging):
        return []
    keep = ["kind", "label", "recent_documents", "expected_recent", "recent_share", "earlier_share", "growth"]
    keep += ["p_value", "q_value", "emerging"]
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in emerging[keep].to_dict("records")
    ]


def _num(values: pd.Series) -> float | None:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else None


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–" if value is None or value != value else "∞"
    return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))


def backtest_html(rows: list[dict[str, Any]]) -> str | None:
    """The backtest table (escaped HTML): chosen model and its MASE beside naive and seasonal naive."""
    if not rows:
        return None
    head = ["series", "metric", "chosen", "MASE", "sMAPE %", *(f"MASE {m}" for m in MODELS), "note"]
    body = []
    for r in rows:
        cells = [html.escape(r["series"]), html.escape(r["metric"]), f"<b>{html.escape(r['model'])}</b>"]
        cells += [_fmt(r["mase"]), _fmt(r["smape"], 1), *(_fmt(r[f"mase_{m}"]) for m in MODELS), html.escape(r["note"])]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    caption = (
        "<p>Rolling-origin backtest: mean absolute scaled error (MASE, below 1 beats the in-sample naive "
        "step) of each model; the chosen model has the lowest.</p>"
    )
    return caption + _table(head, body, "backtest")


def emerging_html(rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    head = [
        "kind",
        "key",
        "recent documents",
        "expected",
        "recent share",
        "earlier share",
        "growth",
        "p-value",
        "q-value",
    ]
    head.append("emerging")
    body = []
    for r in rows:
        cells = [
            html.escape(str(r["kind"])),
            html.escape(str(r["label"])),
            str(r["recent_documents"]),
            _fmt(r["expected_recent"], 1),
        ]
        cells += [f"{r['recent_share']:.1%}", f"{r['earlier_share']:.1%}", _fmt(r["growth"]), f"{r['p_value']:.3g}"]
        cells += [f"{r['q_value']:.3g}", "<b>yes</b>" if r["emerging"] else "no"]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    caption = (
        "<p>Share of the last periods against the share before, by an exact one-sided binomial test on the "
        "topic's documents (two Poisson rates), Benjamini-Hochberg adjusted (q-value); "
        "emerging: q &lt; 0.05.</p>"
    )
    return caption + _table(head, body, "emerging")


def _table(head: list[str], body: list[str], name: str) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table class="{name}"><tr>{header}</tr>' + "".join(body) + "</table>"


def trend_sections(go, tables: dict[str, pd.DataFrame], render) -> list[tuple[str, str | None]]:
    """(title, HTML) of the report's trend and topic-structure sections; ``render(fig)`` turns a figure into HTML."""

    def drawn(fig):
        return render(fig) if fig is not None else None

    return [
        ("Forecasts", drawn(forecast_figure(go, tables.get("forecasts")))),
        ("Forecast backtest", backtest_html(backtest_rows(tables.get("forecast_backtest")))),
        ("Emerging topics", emerging_html(emerging_rows(tables.get("emerging")))),
        ("Intertopic distance map", drawn(map_figure(go, tables.get("topic_map")))),
        ("Topic hierarchy", drawn(tree_figure(go, tables.get("topic_tree")))),
    ]
