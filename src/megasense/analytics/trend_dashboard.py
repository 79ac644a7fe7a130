"""The dashboard's trends panel: forecasts, backtest, emerging topics, intertopic map and topic hierarchy.

``trends_payload`` reads the trend tables of an analysis (read-only; an analysis made before they
existed simply has none) and returns the same figures as the report, as plotly JSON, with the
backtest and emerging tables as rows. ``TRENDS_JS`` draws them under the main page's charts, inserting
text with ``textContent`` only (labels are user words).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from megasense.analytics import store
from megasense.analytics.trend_charts import backtest_rows, emerging_rows, forecast_figure, map_figure, tree_figure

TABLES = ("forecasts", "forecast_backtest", "emerging", "topic_map", "topic_tree")


def _tables(directory: Path) -> dict[str, Any]:
    import duckdb

    out = {}
    with duckdb.connect(str(directory / store.DATABASE), read_only=True) as con:
        have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        for name in TABLES:
            if name in have:
                out[name] = con.execute(f"SELECT * FROM {store.quote(name)}").df()
    return out


def trends_payload(directory: str | Path) -> dict[str, Any]:
    """``{"figures": {forecast, map, tree}: plotly JSON or None, "backtest": rows, "emerging": rows}``."""
    import plotly.graph_objects as go

    tables = _tables(Path(directory))
    figures = {
        "forecast": forecast_figure(go, tables.get("forecasts")),
        "map": map_figure(go, tables.get("topic_map")),
        "tree": tree_figure(go, tables.get("topic_tree")),
    }
    out: dict[str, Any] = {"figures": {}}
    for name, fig in figures.items():
        if fig is not None:
            fig.update_layout(template="plotly_white", margin={"l": 40, "r": 20, "t": 60, "b": 40})
        out["figures"][name] = None if fig is None else json.loads(fig.to_json())
    out["backtest"] = backtest_rows(tables.get("forecast_backtest"))
    out["emerging"] = emerging_rows(tables.get("emerging"))
    return out


TRENDS_HTML = """<div id="trends">
<h2>Forecasts</h2><div class="chart" id="t-forecast"></div>
<table id="t-backtest"></table>
<h2>Emerging topics</h2><table id="t-emerging"></table>
<div class="charts"><div><h2>Intertopic distance map</h2><div class="chart" id="t-map"></div></div>
<div><h2>Topic hierarchy</h2><div class="chart" id="t-tree"></div></div></div>
</div>
<script src="/trends.js"></script>
"""

TRENDS_JS = """
(function () {
  const el = (id) => document.getElementById(id);
  function fill(table, head, rows) {
    table.replaceChildren();
    const tr = document.createElement("tr");
    head.forEach(h => { const th = document.createElement("th"); th.textContent = h; tr.appendChild(th); });
    table.appendChild(tr);
    rows.forEach(r => {
      const row = document.createElement("tr");
      r.forEach(v => { const td = document.createElement("td"); td.textContent = v; row.appendChild(td); });
      table.appendChild(row);
    });
  }
  const num = (v, d) => (v === null || v === undefined) ? "–" : Number(v).toFixed(d);
  async function draw() {
    const data = await (await fetch("/api/trends")).json();
    [["forecast", "t-forecast"], ["map", "t-map"], ["tree", "t-tree"]].forEach(([name, id]) => {
      const fig = data.figures[name];
      if (fig) { Plotly.newPlot(id, fig.data, fig.layout, {displaylogo: false}); }
      else { el(id).textContent = "none in this analysis"; }
    });
    fill(el("t-backtest"), ["series", "metric", "chosen", "MASE", "MASE naive", "MASE seasonal naive", "note"],
      data.backtest.map(r => [r.series, r.metric, r.model, num(r.mase, 2), num(r.mase_naive, 2),
        num(r.mase_seasonal_naive, 2), r.note]));
    fill(el("t-emerging"), ["kind", "key", "recent", "expected", "growth", "p-value", "q-value", "emerging"],
      data.emerging.map(r => [r.kind, r.label, r.recent_documents, num(r.expected_recent, 1), num(r.growth, 2),
        Number(r.p_value).toPrecision(3), Number(r.q_value).toPrecision(3), r.emerging ? "yes" : "no"]));
    document.body.dataset.trendsReady = "1";
  }
  draw();
})();
"""
