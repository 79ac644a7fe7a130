"""The market charts as plotly figures, built once here for both the HTML report and the dashboard.

Each function takes the tidy frame from ``market.duckdb`` and returns a ``plotly.graph_objects.Figure``;
the report inlines them, the dashboard sends them as JSON (``fig.to_json()``) for ``Plotly.newPlot``.
"""

from __future__ import annotations

import pandas as pd

from megasense.errors import MissingExtraError

PAGE_CSS = """
body { font-family: "Noto Sans", Arial, sans-serif; margin: 1.5rem auto; max-width: 1250px; padding: 0 1rem;
  color: #202124; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; } th { background: #f6f8fa; }
th, td { border-bottom: 1px solid #eee; padding: .3rem .5rem; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; } .sel { font-weight: bold; } .lit { color: #777; }
.warn { background: #fff8e1; padding: .5rem 1rem; }
"""
"""The stylesheet of the report and the dashboard page."""

FONT = '"Noto Sans", Arial, sans-serif'
COLORS = {
    "long-flat": "#1a73e8",
    "long-short": "#9334e6",
    "buy-and-hold": "#5f6368",
    "positive": "#2e9d5b",
    "negative": "#d64545",
}


def _go():
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise MissingExtraError(
            "market charts need plotly (the 'analytics' extra): pip install 'megasense[analytics]'"
        ) from None
    return go


def _styled(fig, title: str, height: int = 420):
    fig.update_layout(
        title=title,
        font={"family": FONT},
        height=height,
        template="plotly_white",
        margin={"l": 50, "r": 50, "t": 50, "b": 40},
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def price_sentiment(frame: pd.DataFrame, ticker: str):
    """Adjusted close (left axis) with the decayed sentiment index and daily posts (right axis)."""
    go = _go()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=frame["date"], y=frame["adj_close"], name=f"{ticker} adjusted close", line={"color": "#202124"})
    )
    fig.add_trace(
        go.Bar(
            x=frame["date"],
            y=frame["sent_mean"],
            name="mean polarity (day)",
            yaxis="y2",
            marker={"color": ["#2e9d5b" if v >= 0 else "#d64545" for v in frame["sent_mean"].fillna(0)]},
            opacity=0.45,
        )
    )
    fig.add_trace(
        go.Scatter(
            x=frame["date"],
            y=frame["sent_decay"],
            name="sentiment (decayed)",
            yaxis="y2",
            line={"color": "#1a73e8", "width": 1.5},
        )
    )
    fig.update_layout(
        yaxis={"title": "price"}, yaxis2={"title": "polarity", "overlaying": "y", "side": "right", "range": [-1, 1]}
    )
    return _styled(fig, f"{ticker}: price and sentiment")


def cumulative_returns(backtest: pd.DataFrame, model: str):
    go = _go()
    fig = go.Figure()
    for column in ("long-flat", "long-short", "buy-and-hold"):
        if column in backtest:
            growth = (1 + backtest[column].fillna(0)).cumprod() - 1
            fig.add_trace(go.Scatter(x=backtest["date"], y=growth, name=column, line={"color": COLORS[column]}))
    fig.update_layout(yaxis={"title": "cumulative return", "tickformat": ".1%"})
    return _styled(fig, f"Strategies from {model}'s predictions vs buy-and-hold (test period, after costs)")


def calibration(table: pd.DataFrame):
    go = _go()
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], name="perfect", line={"dash": "dot", "color": "#9aa0a6"}))
    for model, part in table.groupby("model"):
        fig.add_trace(
            go.Scatter(
                x=part["predicted"],
                y=part["observed"],
                mode="lines+markers",
                name=model,
                text=[f"{int(c)} days" for c in part["count"]],
            )
        )
    fig.update_layout(xaxis={"title": "predicted P(up)", "range": [0, 1]}, yaxis={"title": "share up", "range": [0, 1]})
    return _styled(fig, "Calibration on the test period")


def importance(table: pd.DataFrame):
    go = _go()
    fig = go.Figure()
    for model, part in table.groupby("model"):
        part = part.sort_values("importance")
        fig.add_trace(
            go.Bar(
                y=part["feature"],
                x=part["importance"],
                orientation="h",
                name=model,
                error_x={"type": "data", "array": part["std"]},
            )
        )
    fig.update_layout(barmode="group", xaxis={"title": "drop in validation AUC when shuffled"})
    return _styled(fig, "Feature importance (permutation, validation period)", height=560)


def event_study(table: pd.DataFrame):
    go = _go()
    fig = go.Figure()
    for kind, part in table.groupby("kind"):
        color = COLORS.get(kind, "#5f6368")
        fig.add_trace(
            go.Scatter(
                x=list(part["day"]) + list(part["day"])[::-1],
                y=list(part["high"]) + list(part["low"])[::-1],
                fill="toself",
                opacity=0.18,
                line={"width": 0},
                fillcolor=color,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=part["day"], y=part["car"], name=f"{kind} days ({int(part['events'].iloc[0])})", line={"color": color}
            )
        )
    fig.update_layout(
        xaxis={"title": "sessions from the sentiment day"},
        yaxis={"title": "cumulative abnormal return", "tickformat": ".1%"},
    )
    return _styled(fig, "Event study: cumulative abnormal return, 95% bands")
