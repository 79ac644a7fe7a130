"""Emerging keys (topics, aspects, brands): a tested rise of a key's share in the recent periods, not eyeballing.

The test compares two Poisson rates, the key's documents per document of the corpus in the recent
window and before it, by the exact conditional test: given the key's ``n`` documents in all, under
"its share did not change" the recent ones are Binomial(n, N_recent / N) where N_recent and N count
all documents. The one-sided p-value (share grew) comes from ``scipy.stats.binomtest``; the
p-values of all keys of a kind are adjusted together by Benjamini-Hochberg (statsmodels' ``multipletests``), and a key
is emerging when its adjusted p-value (``q_value``) is below ``alpha``. Being exact, the test holds
its level on small counts too (it is a little conservative there, as discrete tests are).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TEST = "exact conditional binomial test of the recent share (Poisson rates), one-sided, Benjamini-Hochberg"
COLUMNS = [
    "kind",
    "key",
    "label",
    "recent_periods",
    "recent_documents",
    "earlier_documents",
    "expected_recent",
    "recent_share",
    "earlier_share",
    "growth",
    "p_value",
    "q_value",
    "emerging",
    "test",
]


def recent_window(n_periods: int) -> int:
    """The last quarter of the periods (at least one)."""
    return max(1, n_periods // 4)


def emerging_keys(series: pd.DataFrame, *, recent: int | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """One row per key of a completed series-per-key table (``forecast.complete``): its test and verdict.

    Rows of kind ``all`` are the denominators (every document); without them the keys' own sum is.
    Fewer than two periods, or a ``recent`` that leaves no earlier period: an empty table.
    """
    from scipy.stats import binomtest
    from statsmodels.stats.multitest import multipletests

    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha} must be between 0 and 1")
    keys = series[series["kind"] != "all"]
    periods = np.sort(series["period"].unique())
    recent = recent or recent_window(len(periods))
    if keys.empty or len(periods) < 2 or recent >= len(periods):
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    cut = periods[len(periods) - recent]
    totals = series[series["kind"] == "all"] if (series["kind"] == "all").any() else keys
    late = totals["period"] >= cut
    n_recent, n_all = float(totals.loc[late, "documents"].sum()), float(totals["documents"].sum())
    rows = []
    for (kind, key), part in keys.groupby(["kind", "key"], sort=False):
        x = int(part.loc[part["period"] >= cut, "documents"].sum())
        n = int(part["documents"].sum())
        share = n_recent / n_all if n_all else 0.0
        p = binomtest(x, n, share, alternative="greater").pvalue if n and 0 < share < 1 else 1.0
        earlier_share = (n - x) / (n_all - n_recent) if n_all > n_recent else float("nan")
        recent_share = x / n_recent if n_recent else float("nan")
        rows.append(
            {
                "kind": kind,
                "key": key,
                "label": part["label"].iloc[0],
                "recent_periods": recent,
                "recent_documents": x,
                "earlier_documents": n - x,
                "expected_recent": n * share,
                "recent_share": recent_share,
                "earlier_share": earlier_share,
                "growth": recent_share / earlier_share if earlier_share else float("inf"),
                "p_value": float(p),
            }
        )
    out = pd.DataFrame(rows)
    out["q_value"] = 1.0
    for _, index in out.groupby("kind").groups.items():  # one family per kind: topics, aspects, brands
        out.loc[index, "q_value"] = multipletests(out.loc[index, "p_value"].to_numpy(), method="fdr_bh")[1]
    out["emerging"] = out["q_value"] < alpha
    out["test"] = TEST
    return out.sort_values(["q_value", "growth"], ascending=[True, False]).reset_index(drop=True)[COLUMNS]
