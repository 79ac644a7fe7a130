"""``report.html``: one self-contained page (plotly's JavaScript inlined; opens offline) over a market directory.

It reads the directory the way the dashboard does (``store.MarketData``): the metrics of every model and
baseline on the test period (with the published StockNet results under that protocol), the backtest,
and the charts of ``charts.py``; text from the data is HTML-escaped (jinja2 autoescape).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from megasense.files.atomic import atomic_write_text
from megasense.market import charts
from megasense.market.store import MarketData

TICKERS_SHOWN = 6
"""Price charts for the tickers with the most posts; the dashboard shows any ticker."""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ css | safe }}</style>
<script type="text/javascript">{{ plotly_js | safe }}</script>
</head><body>
<h1>{{ title }}</h1>
<p>{{ facts }}</p>
{% if warnings %}<div class="warn"><ul>{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul></div>{% endif %}
<h2>Next-day direction, test period {{ split.test_start }} to {{ split.test_end }}</h2>
<p>Walk-forward, refitted every {{ settings.step }} sessions, embargo {{ settings.embargo }}; settings and the selected
model chosen on the validation period ({{ split.val_start }} to {{ split.test_start }}) by MCC.</p>
<table><tr><th>model</th><th>accuracy %</th><th>MCC</th><th>AUC</th><th>Brier</th><th>ECE</th>
<th>validation MCC</th></tr>
{% for r in rows %}<tr class="{{ r.cls }}"><td>{{ r.name }}</td><td>{{ r.acc }}</td><td>{{ r.mcc }}</td>
<td>{{ r.auc }}</td>
<td>{{ r.brier }}</td><td>{{ r.ece }}</td><td>{{ r.val }}</td></tr>{% endfor %}
</table>
<h2>Backtest of {{ selected }} ({{ settings.cost_bps }} bps per unit traded)</h2>
<table><tr><th>strategy</th><th>cumulative %</th><th>annual %</th><th>volatility %</th><th>Sharpe</th>
<th>max drawdown %</th>
<th>hit rate % (days)</th><th>turnover / day</th></tr>
{% for name, s in backtest.items() %}<tr><td>{{ name }}</td><td>{{ pct(s.cumulative_return) }}</td>
<td>{{ pct(s.annual_return) }}</td>
<td>{{ pct(s.annual_volatility) }}</td><td>{{ "%.2f"|format(s.sharpe) }}</td><td>{{ pct(s.max_drawdown) }}</td>
<td>{{ pct(s.hit_rate) }}</td><td>{{ "%.2f"|format(s.turnover) }}</td></tr>{% endfor %}
</table>
{% for html in figures %}{{ html | safe }}{% endfor %}
<p style="color:#888">megasense market · model {{ settings.model }} · {{ generated }}</p>
</body></html>
"""


def _pct(value: float | None) -> str:
    return "" if value is None or value != value else f"{100 * value:.2f}"


def _rows(m: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, v in m["test"].items():
        rows.append(
            {
                "name": name + (" (selected)" if name == m["selected"] else ""),
                "cls": "sel" if name == m["selected"] else "",
                "acc": _pct(v.get("accuracy")),
                **{k: f"{v.get(k, float('nan')):.3f}" for k in ("mcc", "auc", "brier", "ece")},
                "val": f"{m['validation'][name].get('mcc', float('nan')):.3f}",
            }
        )
    for name, v in m.get("literature", {}).items():
        rows.append(
            {
                "name": f"{name} (published)",
                "cls": "lit",
                "acc": _pct(v["accuracy"]),
                "mcc": f"{v['mcc']:.3f}",
                "auc": "",
                "brier": "",
                "ece": "",
                "val": "",
            }
        )
    return rows


def figures(data: MarketData, tickers: list[str]) -> list[Any]:
    """The report's figures, in order: strategies, calibration, event study, importance, then one per ticker."""
    figs = [
        charts.cumulative_returns(data.table("SELECT * FROM backtest ORDER BY date"), data.metrics["selected"]),
        charts.calibration(data.table("SELECT * FROM calibration ORDER BY model, bin")),
        charts.event_study(data.table("SELECT * FROM event_study ORDER BY kind, day")),
        charts.importance(data.table("SELECT * FROM importance")),
    ]
    return figs + [charts.price_sentiment(data.prices(t), t) for t in tickers]


def write_report(directory: str | Path) -> Path:
    import jinja2
    from plotly.offline import get_plotlyjs

    data = MarketData(directory)
    m = data.metrics
    html_figs = [
        f.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        for f in figures(data, data.tickers()[:TICKERS_SHOWN])
    ]
    d = m["data"]
    facts = (
        f"{d['texts']:,} texts over {d['tickers']} tickers; {d['labelled_test']:,} labelled ticker-days in the "
        f"test period; sentiment model {m['settings']['model']}."
    )
    page = (
        jinja2.Environment(autoescape=True)
        .from_string(_PAGE)
        .render(
            title="Market sentiment" + (" (StockNet protocol)" if m["settings"].get("protocol") == "stocknet" else ""),
            plotly_js=get_plotlyjs(),
            css=charts.PAGE_CSS,
            facts=facts,
            warnings=m.get("warnings", []),
            split=m["split"],
            settings=m["settings"],
            rows=_rows(m),
            selected=m["selected"],
            backtest=m["backtest"],
            pct=_pct,
            figures=html_figs,
            generated=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
    path = Path(directory) / "report.html"
    atomic_write_text(path, page)
    return path
