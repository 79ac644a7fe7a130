"""StockNet's protocol with one or more sentiment models: our models and baselines beside the published results.

Data: ``../shared/data/stocknet`` (Xu & Cohen 2018, MIT): 106,338 tweets over 87 tickers (pre-tokenised word
lists, read as text) and daily prices. Labels: up when the adjusted close rises more than 0.55%, down when it
falls more than 0.5%, other days dropped; train 2014-01-01..2015-08-01, validation ..2015-10-01, test
2015-10-01..2016-01-01 (the 3,720 test samples of the paper). Each model runs the whole ``megasense market``
journey (scores cached in ``--cache``, so a second model or a rerun only scores what is new); the table
prints every model and baseline on the test period with the selected one marked, then the literature.

Our setting is stricter than the paper's in one way: a tweet counts only for the session whose close comes
after it (tweets posted after day d's close, which StockNet lets predict the move into day d+1's close,
here wait one more session), so numbers are not inflated by after-hours news.

    python benchmarks/market_stocknet.py --models sentiment-en,sentiment-finance-en --out /tmp/market/bench
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _common import SHARED_DATA, peak_rss_mb

STOCKNET = SHARED_DATA / "stocknet"


def table(name: str, metrics: dict) -> list[str]:
    lines = [
        f"\n{name}: test {metrics['split']['test_start']}..{metrics['split']['test_end']}, "
        f"{metrics['data']['labelled_test']:,} labelled ticker-days; selected on validation: {metrics['selected']}",
        "| model | accuracy % | MCC | AUC | Brier | validation MCC |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, m in metrics["test"].items():
        mark = " (selected)" if model == metrics["selected"] else ""
        lines.append(
            f"| {model}{mark} | {100 * m['accuracy']:.2f} | {m['mcc']:.3f} | {m['auc']:.3f} | {m['brier']:.3f} "
            f"| {metrics['validation'][model]['mcc']:.3f} |"
        )
    for paper, m in metrics["literature"].items():
        lines.append(f"| {paper}, published | {100 * m['accuracy']:.2f} | {m['mcc']:.3f} | | | |")
    bt = metrics["backtest"]
    lines.append("| strategy | cumulative % | Sharpe | max drawdown % | turnover | |")
    for strategy, s in bt.items():
        lines.append(
            f"| {strategy} | {100 * s['cumulative_return']:.2f} | {s['sharpe']:.2f} | "
            f"{100 * s['max_drawdown']:.2f} | {s['turnover']:.2f} | |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="sentiment-finance-en", help="comma-separated sentiment models")
    parser.add_argument("--out", type=Path, required=True, help="one result directory per model is made under it")
    parser.add_argument("--cache", type=Path, help="score cache [default: $MEGASENSE_HOME/market/scores.duckdb]")
    parser.add_argument("--json", type=Path, help="write every model's metrics here too")
    args = parser.parse_args(argv)
    tweets, prices = STOCKNET / "tweets_preprocessed.jsonl.gz", STOCKNET / "price-raw"
    if not tweets.is_file():
        print(f"needs {tweets} (the shared stocknet data set)", file=sys.stderr)
        return 2
    import torch

    from megasense.api import market

    torch.set_num_threads(1)  # one thread: the machine is shared
    results = {}
    for model in args.models.split(","):
        t0 = time.perf_counter()
        result = market(
            tweets,
            prices,
            args.out / model.replace("/", "_"),
            protocol="stocknet",
            model=model,
            cache=args.cache or True,
            overwrite=True,
        )
        result.metrics["timings"]["total"] = time.perf_counter() - t0
        results[model] = result.metrics
        print("\n".join(table(model, result.metrics)))
        timings = ", ".join(f"{k} {v:.0f}s" for k, v in result.metrics["timings"].items())
        d = result.metrics["data"]
        print(
            f"{d['texts']:,} tweets, {d['scored']:,} scored, {d['from_cache']:,} from the cache; {timings}; "
            f"peak RSS {peak_rss_mb():.0f} MB (loaded shared CPU)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
