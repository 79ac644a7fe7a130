"""Market sentiment: posts with times and tickers, joined with prices, predicting the next day's move.

The journey: ``inputs`` (texts and prices, checked) -> ``sessions`` (each text to the first trading
session it can affect) -> ``scoring`` (any sentiment scorer, streamed, cached on disk) -> ``index``
(daily sentiment per ticker, with decay) -> ``features`` (price features, labels) -> ``predict``
(walk-forward, purged and embargoed; models and baselines) -> ``backtest`` (strategies and an event
study) -> ``store`` (DuckDB), ``report`` (HTML) and ``dashboard``. ``pipeline.run_market`` ties them.
Like analytics, the room never loads a model itself: the caller hands in a scorer.
"""
