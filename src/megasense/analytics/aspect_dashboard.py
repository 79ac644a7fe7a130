"""The dashboard's aspects and brands panel: sentiment toward each aspect and brand, share of voice, co-mentions.

``aspects_payload`` reads the aspect and brand tables of an analysis (read-only; an analysis made without
``--aspects`` / ``--brands`` has none) and returns the report's figures as plotly JSON, with the example
sentences as rows. ``ASPECTS_JS`` draws them, inserting user text with ``textContent`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megasense.analytics import store
from megasense.analytics.aspect_charts import comention_figure, examples_rows, shares_figure, voice_figure

TABLES = ("aspects", "brands", "brand_timeseries", "brand_comentions")


def _read(directory: Path) -> dict[str, Any]:
    with store.connect(directory / store.DATABASE, read_only=True) as con:
        have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return {name: con.execute(f"SELECT * FROM {store.quote(name)}").df() for name in TABLES if name in have}


def aspects_payload(directory: str | Path) -> dict[str, Any]:
    """``{"figures": {aspects, brands, voice, comentions}: plotly JSON or None, "aspects"/"brands": rows}``."""
    import plotly.graph_objects as go

    tables = _read(Path(directory))
    figures = {
        "aspects": shares_figure(go, tables.get("aspects"), "aspect"),
        "brands": shares_figure(go, tables.get("brands"), "brand"),
        "voice": voice_figure(go, tables.get("brands"), tables.get("brand_timeseries")),
        "comentions": comention_figure(go, tables.get("brand_comentions")),
    }
    out: dict[str, Any] = {"figures": {}}
    for name, fig in figures.items():
        if fig is not None:
            fig.update_layout(template="plotly_white", margin={"l": 160, "r": 20, "t": 30, "b": 40})
        out["figures"][name] = None if fig is None else json.loads(fig.to_json())
    out["aspects"] = examples_rows(tables.get("aspects"), "aspect")
    out["brands"] = examples_rows(tables.get("brands"), "brand")
    return out


ASPECTS_HTML = """<div id="aspects-panel">
<h2>Aspects</h2><div class="chart" id="a-aspects"></div><table id="a-aspect-rows"></table>
<h2>Brands</h2><div class="charts"><div class="chart" id="a-brands"></div><div class="chart" id="a-voice"></div>
<div class="chart" id="a-comentions"></div></div><table id="a-brand-rows"></table>
</div>
<script src="/aspects.js"></script>
"""

ASPECTS_JS = """
(function () {
  const el = (id) => document.getElementById(id);
  const SHADE = {positive: "#2e9d5b", negative: "#d64545"};
  function node(tag, text, parent) {  // text only: user words never become HTML
    const n = document.createElement(tag);
    if (text !== null) { n.textContent = text; }
    parent.appendChild(n);
    return n;
  }
  function fill(table, head, rows) {
    table.replaceChildren();
    const top = node("tr", null, table);
    head.forEach(h => node("th", h, top));
    rows.forEach(r => {
      const row = node("tr", null, table);
      r.cells.forEach(v => node("td", String(v), row));
      const examples = node("td", null, row);
      r.examples.forEach(e => { node("p", e.sentence, examples).style.color = SHADE[e.sentiment] || ""; });
    });
  }
  const net = (v) => (v === null || v === undefined) ? "–" : (v >= 0 ? "+" : "") + Number(v).toFixed(2);
  const rows = (list) => list.map(r => ({cells: [r.name, r.forms, r.mentions, r.documents,
    (100 * r.share_of_voice).toFixed(1) + "%", net(r.net_sentiment)], examples: r.examples}));
  const head = (name) => [name, "forms", "mentions", "documents", "share of voice", "net sentiment", "examples"];
  async function draw() {
    const data = await (await fetch("/api/aspects")).json();
    [["aspects", "a-aspects"], ["brands", "a-brands"], ["voice", "a-voice"], ["comentions", "a-comentions"]]
      .forEach(([name, id]) => {
        const fig = data.figures[name];
        if (fig) { Plotly.newPlot(id, fig.data, fig.layout, {displaylogo: false}); }
        else { el(id).textContent = "none in this analysis (analyze with --aspects / --brands)"; }
      });
    fill(el("a-aspect-rows"), head("aspect"), rows(data.aspects));
    fill(el("a-brand-rows"), head("brand"), rows(data.brands));
    document.body.dataset.aspectsReady = "1";
  }
  draw();
})();
"""
