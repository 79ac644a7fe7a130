"""``create_dashboard_app(directory)``: an interactive page over an analysis's ``analysis.duckdb``.

Explicit steps per request: query parameters (validated by FastAPI) -> ``Filters`` -> one
parameterised SQL query per panel on a read-only DuckDB connection -> JSON. The page (plain HTML
and JavaScript, plotly served from the installed package: no CDN) redraws its charts and the
document table from ``/api/query`` whenever a filter changes. User text reaches the page only as
JSON and is inserted with ``textContent``, never as HTML.

Every query parameter is checked before it reaches DuckDB (a date that does not exist, an offset past any
table: 422, never a 500). Served on a specific interface (the loopback default), the app answers only
requests whose Host header names that interface or a loopback name, so a web page cannot reach it by
DNS rebinding (a name of the attacker's that resolves to 127.0.0.1).
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from megasense.analytics import store
from megasense.analytics.aspect_dashboard import ASPECTS_HTML, ASPECTS_JS, aspects_payload
from megasense.analytics.explanations import EXPLAIN_HTML, EXPLAIN_JS, explanations_payload
from megasense.analytics.trend_dashboard import TRENDS_HTML, TRENDS_JS, trends_payload
from megasense.errors import MegasenseInputError

MAX_ROWS = 500
MAX_OFFSET = 1_000_000_000
"""Largest ``offset`` (and topic number) a query takes; DuckDB's integers would overflow far above."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")


@dataclass(frozen=True)
class Filters:
    start: str | None = None
    """First day (ISO date), inclusive."""
    end: str | None = None
    """Last day (ISO date), inclusive."""
    topic: int | None = None
    sentiment: str | None = None
    group: str | None = None
    q: str | None = None
    """Case-insensitive substring of the text."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DashboardData:
    """The queries behind the dashboard, on one analysis directory (read-only)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        summary = store.read_summary(self.directory)
        if summary is None or not (self.directory / store.DATABASE).is_file():
            raise MegasenseInputError(
                f"{self.directory}: holds no megasense analysis (run `megasense analyze ... --out DIR`)"
            )
        self.summary = summary
        settings = summary["settings"]
        self.text_col = _ident(settings["text_col"])
        self.group_col = _ident(settings["group_col"]) if settings.get("group_col") else None

    def _rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        import duckdb

        with duckdb.connect(str(self.directory / store.DATABASE), read_only=True) as con:
            cursor = con.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _where(self, f: Filters) -> tuple[str, list[Any]]:
        clauses, params = ["TRUE"], []
        if f.start:
            clauses.append("time_utc >= CAST(? AS DATE)")
            params.append(f.start)
        if f.end:
            clauses.append("time_utc < CAST(? AS DATE) + INTERVAL 1 DAY")
            params.append(f.end)
        if f.topic is not None:
            clauses.append("topic = ?")
            params.append(f.topic)
        if f.sentiment:
            clauses.append("sentiment = ?")
            params.append(f.sentiment)
        if f.group is not None and self.group_col:
            clauses.append(f"CAST({self.group_col} AS VARCHAR) = ?")
            params.append(f.group)
        if f.q:
            clauses.append(f"{self.text_col} ILIKE ? ESCAPE '\\'")
            params.append("%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        return " AND ".join(clauses), params

    def meta(self) -> dict[str, Any]:
        topics = self._rows("SELECT topic, label, documents FROM topics ORDER BY topic", [])
        span = self._rows("SELECT min(time_utc) AS first, max(time_utc) AS last FROM documents", [])[0]
        groups = []
        if self.group_col:
            sql = f"SELECT DISTINCT CAST({self.group_col} AS VARCHAR) AS g FROM documents ORDER BY g LIMIT 1000"
            groups = [r["g"] for r in self._rows(sql, []) if r["g"] is not None]
        return {
            "input": self.summary.get("input"),
            "documents": self.summary.get("documents"),
            "topics": topics,
            "groups": groups,
            "sentiments": ["positive", "neutral", "negative"],
            "first": _iso(span["first"]),
            "last": _iso(span["last"]),
        }

    def query(self, f: Filters, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        where, params = self._where(f)
        group = f", CAST({self.group_col} AS VARCHAR) AS grp" if self.group_col else ", NULL AS grp"
        docs = self._rows(
            f"SELECT doc_id, {self.text_col} AS text, time_utc, topic, topic_label, sentiment, score{group} "
            f"FROM documents WHERE {where} ORDER BY doc_id LIMIT ? OFFSET ?",
            [*params, min(limit, MAX_ROWS), offset],
        )
        total = self._rows(f"SELECT count(*) AS n FROM documents WHERE {where}", params)[0]["n"]
        sentiment = self._rows(
            f"SELECT coalesce(sentiment, 'none') AS sentiment, count(*) AS n FROM documents WHERE {where} "
            "GROUP BY 1 ORDER BY 1",
            params,
        )
        topics = self._rows(
            f"SELECT topic, any_value(topic_label) AS label, count(*) AS n, avg(polarity) AS mean_polarity "
            f"FROM documents WHERE {where} GROUP BY topic ORDER BY n DESC LIMIT 30",
            params,
        )
        series = self._rows(
            f"SELECT period, count(*) AS n, avg(polarity) AS mean_polarity, "
            f"count(*) FILTER (WHERE sentiment = 'positive') AS positive, "
            f"count(*) FILTER (WHERE sentiment = 'negative') AS negative "
            f"FROM documents WHERE {where} AND period IS NOT NULL GROUP BY period ORDER BY period",
            params,
        )
        for row in docs:
            row["time_utc"] = _iso(row["time_utc"])
        for row in series:
            row["period"] = _iso(row["period"])
        return {"total": total, "documents": docs, "sentiment": sentiment, "topics": topics, "timeseries": series}


def _iso(value) -> str | None:
    return None if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)


def checked_day(value: str | None, name: str) -> str | None:
    """``value`` if it is a calendar day (YYYY-MM-DD that exists); raises ValueError naming the parameter."""
    if value is None:
        return None
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a day of the calendar; give YYYY-MM-DD, e.g. 2026-02-28") from None


def allowed_hosts(bind: str | None) -> frozenset[str] | None:
    """Host names (without port) the app answers when bound to ``bind``; None: any (no bind given, or all
    interfaces, whose names cannot be known)."""
    if bind is None or bind.strip().lower() in WILDCARD_BINDS:
        return None
    return frozenset({*LOOPBACK_NAMES, bind.strip().lower(), f"[{bind.strip().lower()}]"})


def host_name(header: str) -> str:
    """The name part of a Host header: ``[::1]:8000`` -> ``[::1]``, ``localhost:8000`` -> ``localhost``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@functools.cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def create_dashboard_app(directory: str | Path, *, host: str | None = None):
    """The FastAPI app: ``/`` (the page), ``/plotly.min.js``, ``/api/meta``, ``/api/query``, ``/health``.

    ``host``: the interface it will be served on; then requests whose Host header names neither it nor a
    loopback name get 400 (DNS rebinding). None (or all interfaces): any Host."""
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    data = DashboardData(directory)
    app = FastAPI(title="megasense dashboard", docs_url=None, redoc_url=None)
    hosts = allowed_hosts(host)

    if hosts is not None:

        @app.middleware("http")
        async def check_host(request: Request, call_next):
            name = host_name(request.headers.get("host", ""))
            if name not in hosts:
                detail = f"Host {name!r} is not served here; open the dashboard at http://{host}:PORT or localhost"
                return JSONResponse({"detail": detail}, status_code=400)
            return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/plotly.min.js")
    def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/trends.js")
    def trends_js() -> Response:
        return Response(TRENDS_JS, media_type="application/javascript")

    @app.get("/api/trends")
    def trends() -> dict[str, Any]:
        """Forecasts, backtest, emerging topics, the intertopic map and the topic hierarchy (``trend_dashboard``)."""
        return trends_payload(data.directory)

    @app.get("/aspects.js")
    def aspects_js() -> Response:
        return Response(ASPECTS_JS, media_type="application/javascript")

    @app.get("/api/aspects")
    def aspects() -> dict[str, Any]:
        """Aspects and brands: sentiment toward each, share of voice, co-mentions (``aspect_dashboard``)."""
        return aspects_payload(data.directory)

    @app.get("/explain.js")
    def explain_js() -> Response:
        return Response(EXPLAIN_JS, media_type="application/javascript")

    @app.get("/api/explanations")
    def explanations(topic: int | None = Query(None, ge=-1, le=MAX_OFFSET)) -> dict[str, Any]:
        """The representative posts of a topic (or all) with their word attributions (``analytics.explanations``)."""
        return explanations_payload(data.directory, topic)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/meta")
    def meta() -> dict[str, Any]:
        return data.meta()

    @app.get("/api/query")
    def query(
        start: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
        end: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
        topic: int | None = Query(None, ge=-1, le=MAX_OFFSET),
        sentiment: str | None = Query(None, pattern="^(positive|neutral|negative)$"),
        group: str | None = None,
        q: str | None = Query(None, max_length=200),
        limit: int = Query(50, ge=1, le=MAX_ROWS),
        offset: int = Query(0, ge=0, le=MAX_OFFSET),
    ) -> dict[str, Any]:
        try:
            start, end = checked_day(start, "start"), checked_day(end, "end")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        filters = Filters(start=start, end=end, topic=topic, sentiment=sentiment, group=group, q=q or None)
        return data.query(filters, limit=limit, offset=offset)

    app.state.dashboard = data
    return app


PANELS = TRENDS_HTML + ASPECTS_HTML + EXPLAIN_HTML
"""The panels under the main charts: trends, aspects and brands, explanations."""

PAGE = (
    """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>megasense dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/plotly.min.js"></script>
<style>
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",Arial,sans-serif;margin:1rem 2rem;color:#202124}
#filters{display:flex;flex-wrap:wrap;gap:.8rem;align-items:end;margin-bottom:1rem}
label{display:flex;flex-direction:column;font-size:.8rem;color:#555}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.chart{height:320px}
table{border-collapse:collapse;width:100%;font-size:.85rem}
td,th{border-bottom:1px solid #eee;padding:.3rem;text-align:left}
</style></head><body>
<h1>megasense dashboard <small id="title"></small></h1>
<div id="filters">
<label>from<input type="date" id="start"></label><label>to<input type="date" id="end"></label>
<label>topic<select id="topic"><option value="">all</option></select></label>
<label>sentiment<select id="sentiment"><option value="">all</option></select></label>
<label>group<select id="group"><option value="">all</option></select></label>
<label>search<input type="search" id="q" placeholder="text contains"></label>
</div>
<div id="count"></div>
<div class="charts"><div class="chart" id="c-sentiment"></div><div class="chart" id="c-time"></div>
<div class="chart" id="c-topics"></div></div>
"""
    + PANELS
    + """<h2>Documents</h2>
<table><thead><tr><th>#</th><th>time</th><th>group</th><th>topic</th><th>sentiment</th><th>text</th></tr></thead>
<tbody id="docs"></tbody></table>
<script>
const $ = (id) => document.getElementById(id);
const COLORS = {positive: "#2e9d5b", neutral: "#9aa0a6", negative: "#d64545", none: "#ccc"};
function option(select, value, text) {
  const o = document.createElement("option"); o.value = value; o.textContent = text; select.appendChild(o);
}
async function init() {
  const meta = await (await fetch("/api/meta")).json();
  $("title").textContent = meta.input + " (" + meta.documents + " documents)";
  meta.topics.forEach(t => option($("topic"), t.topic, t.label));
  meta.sentiments.forEach(s => option($("sentiment"), s, s));
  meta.groups.forEach(g => option($("group"), g, g));
  if (meta.first) { $("start").value = meta.first.slice(0, 10); $("end").value = meta.last.slice(0, 10); }
  ["start", "end", "topic", "sentiment", "group"].forEach(id => $(id).addEventListener("change", refresh));
  let timer; $("q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 250); });
  refresh();
}
async function refresh() {
  const params = new URLSearchParams();
  ["start", "end", "topic", "sentiment", "group", "q"].forEach(id => { if ($(id).value) params.set(id, $(id).value); });
  const data = await (await fetch("/api/query?" + params)).json();
  $("count").textContent = data.total + " documents match";
  const layout = {margin: {l: 40, r: 10, t: 30, b: 40}};
  Plotly.react("c-sentiment", [{type: "bar", x: data.sentiment.map(r => r.sentiment), y: data.sentiment.map(r => r.n),
    marker: {color: data.sentiment.map(r => COLORS[r.sentiment])}}], {...layout, title: {text: "sentiment"}});
  Plotly.react("c-time", [{type: "scatter", mode: "lines+markers", x: data.timeseries.map(r => r.period),
    y: data.timeseries.map(r => r.n), name: "documents"}], {...layout, title: {text: "documents over time"}});
  Plotly.react("c-topics", [{type: "bar", orientation: "h", y: data.topics.map(r => r.label).reverse(),
    x: data.topics.map(r => r.n).reverse()}],
    {...layout, title: {text: "topics"}, margin: {l: 220, r: 10, t: 30, b: 40}});
  const body = $("docs"); body.replaceChildren();
  data.documents.forEach(d => {
    const tr = document.createElement("tr");
    [d.doc_id, (d.time_utc || "").slice(0, 10), d.grp ?? "", d.topic_label, d.sentiment ?? "", d.text].forEach(v => {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    });
    body.appendChild(tr);
  });
  document.body.dataset.ready = "1";
}
init();
</script></body></html>
"""
)
