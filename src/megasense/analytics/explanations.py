"""Why each topic's representative posts got their sentiment: word attributions (``predictors.explain``,
occlusion) for only those few posts, so ``analyze`` stays fast, stored as the ``explanations`` table.

The report shows each post as highlighted text (``Explanation.to_html``: HTML-escaped, a background as strong
as the word's attribution); the dashboard's topic view draws the same words from ``/api/explanations``,
inserting text with ``textContent`` only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from megasense.analytics import store

COLUMNS = ["topic", "rank", "text", "label", "score", "words", "html"]
MAX_TOPICS = 30
"""The largest topics whose representative posts are explained (the report shows 30)."""


def explain_representatives(
    topics: pd.DataFrame,
    scorer: Any,
    *,
    max_topics: int = MAX_TOPICS,
    previous: pd.DataFrame | None = None,
    batch_size: int = 64,
) -> pd.DataFrame:
    """One row per representative post of the ``max_topics`` largest topics: its label, score, word
    attributions (JSON: word, start, end, attribution) and highlighted HTML. ``scorer``: the analysis's
    sentiment scorer; one whose results carry no ``probs`` and ``label_names`` explains nothing (no rows).
    ``batch_size``: the most texts one scorer call sees (the analysis's batch).
    ``previous``: the analysis's earlier table (``--append``); a post it already explains is not explained again."""
    from megasense.predictors.explain import Explainer

    shown = topics[topics["topic"] >= 0].sort_values("documents", ascending=False).head(max_topics)
    posts = [(int(t.topic), rank, text) for t in shown.itertuples() for rank, text in enumerate(t.representative)]
    posts = [(topic, rank, text) for topic, rank, text in posts if isinstance(text, str) and text.strip()]
    known = {} if previous is None else {(int(r.topic), str(r.text)): r for r in previous.itertuples(index=False)}
    if posts and all((topic, text) in known for topic, _, text in posts):
        kept = [known[(topic, text)]._asdict() | {"rank": rank} for topic, rank, text in posts]
        return pd.DataFrame(kept).astype({"topic": np.int64, "rank": np.int64})[COLUMNS]
    probe = scorer.predict([posts[0][2]]) if posts else None
    if probe is None or getattr(probe, "probs", None) is None or getattr(probe, "label_names", None) is None:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})  # nothing to measure a word's effect on
    explanations = Explainer(scorer, batch_size=batch_size).explain([text for _, _, text in posts])
    frame = pd.DataFrame(
        {
            "topic": np.array([p[0] for p in posts], dtype=np.int64),
            "rank": np.array([p[1] for p in posts], dtype=np.int64),
            "text": [e.text for e in explanations],
            "label": [e.label for e in explanations],
            "score": [e.score for e in explanations],
            "words": [json.dumps([w.to_dict() for w in e.words], ensure_ascii=False) for e in explanations],
            "html": [e.to_html() for e in explanations],
        }
    )
    return frame[COLUMNS]


def previous_explanations(con: Any, schema: str = "old") -> pd.DataFrame | None:
    """The ``explanations`` table of the analysis attached as ``schema`` (when appending), or None."""
    have = con.execute(
        "SELECT 1 FROM duckdb_tables() WHERE database_name = ? AND table_name = 'explanations'", [schema]
    )
    if not have.fetchall():
        return None
    return con.execute(f"SELECT * FROM {schema}.explanations").df()


def highlighted_posts(tables: dict[str, pd.DataFrame]) -> dict[int, list[str]]:
    """Topic -> its representative posts as highlighted (escaped) HTML, from the ``explanations`` table."""
    table = tables.get("explanations")
    if table is None or table.empty:
        return {}
    out: dict[int, list[str]] = {}
    for row in table.sort_values(["topic", "rank"]).itertuples():
        out.setdefault(int(row.topic), []).append(str(row.html))
    return out


def explanations_payload(directory: str | Path, topic: int | None = None) -> dict[str, Any]:
    """``{"posts": [{topic, label, score, text, words}]}`` of one topic (or all), for the dashboard."""
    with store.connect(Path(directory) / store.DATABASE, read_only=True) as con:
        have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "explanations" not in have:
            return {"posts": []}
        where, params = ("WHERE topic = ?", [topic]) if topic is not None else ("", [])
        rows = con.execute(
            f"SELECT topic, label, score, text, words FROM explanations {where} ORDER BY topic, rank", params
        ).fetchall()
    posts = [
        {"topic": t, "label": label, "score": score, "text": text, "words": json.loads(words)}
        for t, label, score, text, words in rows
    ]
    return {"posts": posts}


EXPLAIN_HTML = """<div id="explain-panel"><h2>Why: representative posts</h2>
<p style="color:#555;font-size:.85rem">The words that drove each post's sentiment (occlusion): green raised the
predicted label, red lowered it. Pick a topic above to see its posts.</p><div id="x-posts"></div></div>
<script src="/explain.js"></script>
"""

EXPLAIN_JS = """
(function () {
  const el = (id) => document.getElementById(id);
  async function draw() {
    const topic = el("topic") ? el("topic").value : "";
    const data = await (await fetch("/api/explanations" + (topic ? "?topic=" + topic : ""))).json();
    const box = el("x-posts"); box.replaceChildren();
    data.posts.forEach(post => {
      const p = document.createElement("p"); p.className = "x-post";
      const scale = Math.max(1e-9, ...post.words.map(w => Math.abs(w.attribution)));
      let last = 0;
      post.words.forEach(w => {
        p.appendChild(document.createTextNode(post.text.slice(last, w.start)));
        const span = document.createElement("span"); span.textContent = w.word;
        const alpha = (Math.min(1, Math.abs(w.attribution) / scale) * 0.6).toFixed(2);
        span.style.background = (w.attribution >= 0 ? "rgba(34,160,80," : "rgba(210,50,50,") + alpha + ")";
        span.title = (w.attribution >= 0 ? "+" : "") + w.attribution.toFixed(3);
        p.appendChild(span); last = w.end;
      });
      p.appendChild(document.createTextNode(post.text.slice(last)));
      const tag = document.createElement("small");
      tag.textContent = "  (" + post.label + ", " + post.score.toFixed(2) + ")";
      p.appendChild(tag); box.appendChild(p);
    });
    box.dataset.ready = "1";
  }
  window.addEventListener("load", () => { draw(); if (el("topic")) el("topic").addEventListener("change", draw); });
})();
"""
