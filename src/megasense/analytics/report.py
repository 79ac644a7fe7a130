"""``report.html``: one self-contained page (plotly's bundled JavaScript inlined; no CDN, works offline).

Charts: sentiment distribution, sentiment over time (periods with few documents drawn faint),
topic sizes, topic x sentiment, topics over time, sentiment per group; tables: keywords and key
phrases per topic, representative posts. User text is HTML-escaped (jinja2 autoescape); the page
declares UTF-8 and a CJK-capable font stack so Chinese renders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from megasense.analytics.aspect_charts import aspect_sections
from megasense.analytics.explanations import highlighted_posts
from megasense.analytics.trend_charts import trend_sections
from megasense.config.extras import MissingExtraError
from megasense.files.atomic import atomic_file

COLORS = {"positive": "#2e9d5b", "neutral": "#9aa0a6", "negative": "#d64545"}
FONT = '"Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "Noto Sans", Arial, sans-serif'
MAX_TOPICS_SHOWN = 30

_PAGE = """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font-family: {{ font | safe }}; margin: 2rem auto; max-width: 1200px; color: #202124; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; padding-bottom: .3rem; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { border-bottom: 1px solid #eee; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } .num { text-align: right; white-space: nowrap; }
.facts { display: flex; flex-wrap: wrap; gap: 1.5rem; } .fact b { display: block; font-size: 1.4rem; }
.pos { color: #2e9d5b; } .neg { color: #d64545; } .warn { background: #fff8e1; padding: .5rem 1rem; }
</style>
<script type="text/javascript">{{ plotly_js | safe }}</script>
</head>
<body>
<h1>{{ title }}</h1>
<div class="facts">
{% for name, value in facts %}<div class="fact"><b>{{ value }}</b>{{ name }}</div>{% endfor %}
</div>
{% if warnings %}<div class="warn"><ul>{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul></div>{% endif %}
{% for title, html in charts %}<h2>{{ title }}</h2>{{ html | safe }}{% endfor %}
<h2>Topics: keywords and key phrases</h2>
<table><tr><th>topic</th><th class="num">documents</th><th class="num">mean polarity</th><th>keywords</th>
<th>positive phrases</th><th>negative phrases</th></tr>
{% for t in topics %}<tr><td>{{ t.label }}</td><td class="num">{{ t.documents }}</td>
<td class="num">{{ t.polarity }}</td><td>{{ t.terms }}</td><td class="pos">{{ t.positive }}</td>
<td class="neg">{{ t.negative }}</td></tr>{% endfor %}
</table>
<h2>Representative posts</h2>
{% if explained %}<p style="color:#555">Highlighted: the words that drove each post's sentiment (deleting a word
changes the predicted label's probability; green raised it, red lowered it; hover for the change).</p>{% endif %}
<table><tr><th>topic</th><th>posts</th></tr>
{% for t in topics %}{% if t.representative %}<tr><td>{{ t.label }}</td><td>
{% if t.highlighted %}{% for post in t.highlighted %}<p class="explained">{{ post | safe }}</p>{% endfor %}
{% else %}{% for post in t.representative %}<p>{{ post }}</p>{% endfor %}{% endif %}</td></tr>{% endif %}{% endfor %}
</table>
<p style="color:#888">megasense analyze · {{ generated }}</p>
</body>
</html>
"""


def _plotly():
    try:
        import plotly.graph_objects as go
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise MissingExtraError(
            "report.html needs plotly (the 'analytics' extra): pip install 'megasense[analytics]'"
        ) from None
    return go, get_plotlyjs


def _layout(fig, height: int = 420) -> Any:
    fig.update_layout(
        font={"family": FONT}, height=height, margin={"l": 40, "r": 20, "t": 30, "b": 40}, template="plotly_white"
    )
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})


def _sentiment_bars(go, summary) -> str:
    counts = summary.get("sentiment", {})
    names = list(COLORS)
    fig = go.Figure(go.Bar(x=names, y=[counts.get(n, 0) for n in names], marker_color=[COLORS[n] for n in names]))
    return _layout(fig, 320)


def _over_time(go, series: pd.DataFrame) -> str | None:
    rows = series[series["level"] == "all"].sort_values("period")
    if rows.empty:
        return None
    fig = go.Figure()
    for label in ("negative", "neutral", "positive"):
        fig.add_bar(x=rows["period"], y=rows[label], name=label, marker_color=COLORS[label], yaxis="y")
    # Mean polarity of small periods is drawn faint: a handful of posts says little about a mood.
    opacity = [0.3 if low else 1.0 for low in rows["low_count"]]
    fig.add_scatter(
        x=rows["period"],
        y=rows["mean_polarity"],
        name="mean polarity",
        yaxis="y2",
        mode="lines+markers",
        line={"color": "#202124"},
        marker={"opacity": opacity, "size": 7},
        customdata=rows["documents"],
        hovertemplate="%{x}: %{y:.2f} over %{customdata} documents<extra></extra>",
    )
    fig.update_layout(
        barmode="stack",
        yaxis={"title": "documents"},
        yaxis2={"title": "mean polarity", "overlaying": "y", "side": "right", "range": [-1, 1]},
        legend={"orientation": "h"},
    )
    return _layout(fig)


def _topic_sizes(go, topics: pd.DataFrame) -> str:
    shown = topics[topics["topic"] >= 0].sort_values("documents", ascending=False).head(MAX_TOPICS_SHOWN)[::-1]
    fig = go.Figure(go.Bar(x=shown["documents"], y=shown["label"], orientation="h", marker_color="#4c78a8"))
    return _layout(fig, max(300, 24 * len(shown) + 80))


def _topic_sentiment(go, topics: pd.DataFrame) -> str:
    shown = topics[topics["topic"] >= 0].sort_values("documents", ascending=False).head(MAX_TOPICS_SHOWN)[::-1]
    total = shown[list(COLORS)].sum(axis=1).clip(lower=1)
    fig = go.Figure()
    for label in ("negative", "neutral", "positive"):
        fig.add_bar(x=shown[label] / total, y=shown["label"], name=label, orientation="h", marker_color=COLORS[label])
    fig.update_layout(barmode="stack", xaxis={"tickformat": ".0%"}, legend={"orientation": "h"})
    return _layout(fig, max(300, 24 * len(shown) + 80))


def _topics_over_time(go, series: pd.DataFrame, topics: pd.DataFrame) -> str | None:
    rows = series[(series["level"] == "topic") & (series["topic"] >= 0)]
    if rows.empty or rows["period"].nunique() < 2:
        return None
    top = topics[topics["topic"] >= 0].sort_values("documents", ascending=False).head(10)
    fig = go.Figure()
    for topic, label in zip(top["topic"], top["label"]):
        part = rows[rows["topic"] == topic].sort_values("period")
        fig.add_scatter(x=part["period"], y=part["documents"], name=label, mode="lines+markers")
    return _layout(fig)


def _per_group(go, groups: pd.DataFrame | None) -> str | None:
    if groups is None or groups.empty:
        return None
    shown = groups.sort_values("documents", ascending=False).head(MAX_TOPICS_SHOWN)
    fig = go.Figure()
    for label in ("negative", "neutral", "positive"):
        fig.add_bar(x=shown["group"].astype(str), y=shown[label], name=label, marker_color=COLORS[label])
    fig.update_layout(barmode="stack", legend={"orientation": "h"})
    return _layout(fig)


def _polarity(value) -> str:
    return "" if value is None or value != value else f"{value:+.2f}"


def render_report(tables: dict[str, pd.DataFrame], summary: dict[str, Any]) -> str:
    """The report page as a string."""
    import jinja2

    go, get_plotlyjs = _plotly()
    topics, series = tables["topics"], tables["timeseries"]
    charts = [("Sentiment", _sentiment_bars(go, summary))]
    charts += [
        ("Sentiment over time", _over_time(go, series)),
        ("Topic sizes", _topic_sizes(go, topics)),
        ("Sentiment per topic", _topic_sentiment(go, topics)),
        ("Topics over time", _topics_over_time(go, series, topics)),
        ("Sentiment per group", _per_group(go, tables.get("groups"))),
    ]
    charts += trend_sections(go, tables, lambda fig: _layout(fig, 460))  # forecasts, emerging, topic map and tree
    charts += aspect_sections(go, tables, lambda fig: _layout(fig, 460))  # aspects, brands, share of voice
    highlighted = highlighted_posts(tables)
    rows = [
        {
            "label": t.label,
            "documents": int(t.documents),
            "polarity": _polarity(t.mean_polarity),
            "terms": t.terms,
            "positive": ", ".join(t.positive_phrases),
            "negative": ", ".join(t.negative_phrases),
            "representative": list(t.representative),
            "highlighted": highlighted.get(int(t.topic), []),  # escaped HTML (Explanation.to_html)
        }
        for t in topics.sort_values("documents", ascending=False).itertuples()
        if t.topic >= 0
    ]
    facts = [
        ("documents", f"{summary['documents']:,}"),
        ("topics", summary["topics"]),
        ("outliers", f"{summary['outliers']:,}"),
        ("language", summary["language"]),
    ]
    env = jinja2.Environment(autoescape=True)
    return env.from_string(_PAGE).render(
        title=f"Analysis of {Path(str(summary['input'])).name}",
        lang="zh" if summary["language"] == "zh" else "en",
        font=FONT,
        plotly_js=get_plotlyjs(),
        facts=facts,
        warnings=summary.get("warnings", []),
        charts=[(title, html) for title, html in charts if html],
        topics=rows,
        explained=bool(highlighted),
        generated=summary.get("updated", ""),
    )


def write_report(path: Path, tables: dict[str, pd.DataFrame], summary: dict[str, Any]) -> Path:
    with atomic_file(path, "w") as handle:
        handle.write(render_report(tables, summary))
    return path
