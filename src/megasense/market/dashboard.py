"""``create_market_app(directory)``: the dashboard's pages for a market directory (``megasense dashboard DIR``).

Explicit steps per request: query parameters -> one read-only query on ``market.duckdb`` -> a plotly
figure from ``charts.py`` (the report's own) -> JSON; the page (plain HTML and JavaScript, plotly served
from the installed package: no CDN) draws the figures and redraws the price chart when the ticker
changes. Values from the data reach the page only as JSON, inserted with ``textContent``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from megasense.market import charts
from megasense.market.report import figures
from megasense.market.store import MarketData


def _fig(fig) -> dict[str, Any]:
    return json.loads(fig.to_json())


def create_market_app(directory: str | Path, *, host_ok: Callable[[str], bool] | None = None):
    """The FastAPI app: ``/`` (the page), ``/plotly.min.js``, ``/api/overview``, ``/api/ticker``, ``/health``.

    ``host_ok(host_header)``: False answers 400 (the caller's DNS-rebinding rule; None: any Host)."""
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from plotly.offline import get_plotlyjs

    data = MarketData(directory)  # refuses a directory without market results, before serving anything
    tickers = data.tickers()
    app = FastAPI(title="megasense market dashboard", docs_url=None, redoc_url=None)

    if host_ok is not None:

        @app.middleware("http")
        async def check_host(request: Request, call_next):
            if not host_ok(request.headers.get("host", "")):
                return JSONResponse({"detail": "this Host is not served here; open the dashboard on localhost"}, 400)
            return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return _PAGE.replace("/*CSS*/", charts.PAGE_CSS)

    @app.get("/plotly.min.js")
    def plotly_js() -> Response:
        return Response(get_plotlyjs(), media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/overview")
    def overview() -> dict[str, Any]:
        names = ["strategies", "calibration", "events", "importance"]
        m = data.metrics
        return {
            "tickers": tickers,
            "selected": m["selected"],
            "split": m["split"],
            "test": m["test"],
            "validation": m["validation"],
            "literature": m.get("literature", {}),
            "backtest": m["backtest"],
            "figures": dict(zip(names, (_fig(f) for f in figures(data, [])))),
        }

    @app.get("/api/ticker")
    def ticker(ticker: str = Query(..., max_length=32)) -> dict[str, Any]:
        if ticker not in tickers:
            raise HTTPException(404, f"no ticker {ticker!r} in this run; known: {', '.join(tickers[:20])}")
        return {"ticker": ticker, "figure": _fig(charts.price_sentiment(data.prices(ticker), ticker))}

    return app


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>megasense market</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>/*CSS*/</style>
<script src="/plotly.min.js"></script></head>
<body data-ready="0">
<h1>Market sentiment</h1>
<p id="split"></p>
<table id="metrics"><thead><tr><th>model</th><th>accuracy %</th><th>MCC</th><th>AUC</th><th>Brier</th><th>ECE</th>
<th>validation MCC</th></tr></thead><tbody></tbody></table>
<h2>Price and sentiment</h2>
<label>ticker <select id="ticker"></select></label>
<div id="c-price"></div>
<div class="grid"><div id="c-strategies"></div><div id="c-calibration"></div>
<div id="c-events"></div><div id="c-importance"></div></div>
<script>
const num = (v, d) => (v === undefined || v === null) ? "" : Number(v).toFixed(d);
function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); }
function draw(id, fig) { return Plotly.newPlot(id, fig.data, fig.layout, {displaylogo: false, responsive: true}); }
async function json(url) {
  const r = await fetch(url); if (!r.ok) throw new Error(url + ": " + r.status); return r.json();
}
async function showTicker() {
  document.body.dataset.ready = "0";
  const t = document.getElementById("ticker").value;
  const res = await json("/api/ticker?ticker=" + encodeURIComponent(t));
  await draw("c-price", res.figure);
  document.body.dataset.ready = "1";
}
async function main() {
  const o = await json("/api/overview");
  document.getElementById("split").textContent = "Test period " + o.split.test_start + " to " + o.split.test_end +
    "; validation from " + o.split.val_start + "; selected on validation: " + o.selected;
  const body = document.querySelector("#metrics tbody");
  for (const [name, v] of Object.entries(o.test)) {
    const tr = document.createElement("tr"); if (name === o.selected) tr.className = "sel";
    cell(tr, name === o.selected ? name + " (selected)" : name); cell(tr, num(100 * v.accuracy, 2));
    for (const k of ["mcc", "auc", "brier", "ece"]) cell(tr, num(v[k], 3));
    cell(tr, num(o.validation[name].mcc, 3)); body.appendChild(tr);
  }
  for (const [name, v] of Object.entries(o.literature)) {
    const tr = document.createElement("tr"); tr.className = "lit";
    cell(tr, name + " (published)"); cell(tr, num(100 * v.accuracy, 2)); cell(tr, num(v.mcc, 3));
    for (let i = 0; i < 4; i++) cell(tr, ""); body.appendChild(tr);
  }
  const select = document.getElementById("ticker");
  for (const t of o.tickers) {
    const opt = document.createElement("option"); opt.value = t; opt.textContent = t; select.appendChild(opt);
  }
  select.addEventListener("change", showTicker);
  await Promise.all([draw("c-strategies", o.figures.strategies), draw("c-calibration", o.figures.calibration),
                     draw("c-events", o.figures.events), draw("c-importance", o.figures.importance)]);
  await showTicker();
}
main().catch(e => { document.body.dataset.ready = "error"; document.getElementById("split").textContent = String(e); });
</script></body></html>
"""
