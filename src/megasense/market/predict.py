"""Next-day direction, evaluated walk-forward with purging and an embargo; models beside the baselines.

A period (validation or test) is cut into steps of ``step`` sessions. For each step the model is fitted
on labelled rows whose label ends before the step starts (purged: no training label overlaps a label
it is scored on) and at least ``embargo`` sessions before it (so windowed features that straddle the
boundary do not leak), from the first session (``expanding``) or the last ``window`` sessions
(``rolling``), then predicts the step. Each model's settings are chosen on the validation period; the
model with the best validation MCC is ``selected``; the test period is then evaluated once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, matthews_corrcoef, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from megasense.errors import MegasenseInputError
from megasense.market.features import FEATURES, PRICE_FEATURES, SENTIMENT_FEATURES
from megasense.predictors.metrics import expected_calibration_error


def _logreg(c: float):
    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=c, max_iter=1000))


def _one_thread():
    """scikit-learn's OpenMP threads, one: gradient boosting on a few thousand rows is fastest single-threaded,
    and on a shared, loaded machine more threads spin-wait for cores (measured 26 s per fit vs well under 1 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _gbm(depth: int, rate: float):
    return HistGradientBoostingClassifier(
        max_depth=depth, learning_rate=rate, max_iter=150, min_samples_leaf=50, l2_regularization=1.0, random_state=0
    )


@dataclass
class Candidate:
    name: str
    features: list[str]
    settings: list[dict] = field(default_factory=list)
    make: Callable | None = None
    """``make(**setting)`` -> a scikit-learn classifier; None for the rule baselines."""


def candidates() -> list[Candidate]:
    logreg = [{"c": 0.01}, {"c": 0.1}, {"c": 1.0}]
    return [
        Candidate("always-up", []),
        Candidate("yesterday", ["ret_1"]),
        Candidate("price-only", PRICE_FEATURES, logreg, _logreg),
        Candidate("sentiment-only", SENTIMENT_FEATURES, logreg, _logreg),
        Candidate("logreg", FEATURES, logreg, _logreg),
        Candidate("gbm", FEATURES, [{"depth": 2, "rate": 0.05}, {"depth": 3, "rate": 0.1}], _gbm),
    ]


@dataclass
class Split:
    train_start: pd.Timestamp
    val_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp
    """Periods by the label's date (the session whose move is predicted); each end is exclusive."""

    def __post_init__(self) -> None:
        if not self.train_start < self.val_start < self.test_start < self.test_end:
            raise MegasenseInputError(
                f"periods out of order: train from {self.train_start.date()}, validation from {self.val_start.date()}, "
                f"test from {self.test_start.date()} to {self.test_end.date()}; each must start after the one before"
            )


def walk_forward(frame: pd.DataFrame, start, end, *, step: int, embargo: int, window: int | None):
    """(train index, predict index) per step of ``step`` sessions in [start, end): predicts every row (labelled
    or not, the backtest needs them all); trains on labelled rows only."""
    sessions = np.sort(frame["target_date"].dropna().unique())
    period = sessions[(sessions >= np.datetime64(start)) & (sessions < np.datetime64(end))]
    for i in range(0, len(period), step):
        s, e = period[i], period[min(i + step, len(period)) - 1]
        before = sessions[sessions < s]
        cut = before[-embargo - 1] if len(before) > embargo else None  # last label date allowed in training
        if cut is None:
            continue
        train = frame["label"].notna() & (frame["target_date"] <= cut)
        if window is not None and len(before) > window + embargo:
            train &= frame["target_date"] > before[-embargo - 1 - window]
        test = (frame["target_date"] >= s) & (frame["target_date"] <= e)
        yield np.flatnonzero(train.to_numpy()), np.flatnonzero(test.to_numpy())


def predict_period(frame, cand: Candidate, setting: dict | None, start, end, **wf) -> pd.Series:
    """P(up) for every row whose label date falls in [start, end) (NaN outside)."""
    prob = pd.Series(np.nan, index=frame.index)
    for train, test in walk_forward(frame, start, end, **wf):
        if cand.name == "always-up":
            prob.iloc[test] = 1.0
        elif cand.name == "yesterday":
            prob.iloc[test] = (frame["ret_1"].iloc[test] > 0).astype(float).to_numpy()
        else:
            y = frame["label"].iloc[train].to_numpy().astype(int)
            if len(np.unique(y)) < 2:
                raise MegasenseInputError(
                    f"only one direction in the training data before {frame['target_date'].iloc[test[0]].date()}"
                )
            model = cand.make(**setting).fit(frame[cand.features].iloc[train].to_numpy(), y)
            prob.iloc[test] = model.predict_proba(frame[cand.features].iloc[test].to_numpy())[:, 1]
    return prob


def metrics(label: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """accuracy, MCC, AUC (0.5 for a constant), Brier, ECE and the share predicted up, on labelled rows."""
    keep = ~np.isnan(label) & ~np.isnan(prob)
    y, p = label[keep].astype(int), prob[keep]
    if len(y) == 0:
        return {"n": 0}
    pred = (p > 0.5).astype(int)
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 and len(np.unique(p)) > 1 else 0.5
    confidence = np.where(pred == 1, p, 1 - p)
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, pred)),
        "mcc": float(matthews_corrcoef(y, pred)),
        "auc": auc,
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(confidence, (pred == y).astype(float), bins=10),
        "predicted_up": float(pred.mean()),
    }


@dataclass
class Evaluation:
    validation: dict[str, dict]
    test: dict[str, dict]
    selected: str
    settings: dict[str, dict | None]
    predictions: pd.DataFrame
    """ticker, date, target_date, period, model, prob, label, next_ret: every row of both periods."""


def _rank(scores: dict) -> tuple[float, float]:
    """Validation MCC first (it does not reward always saying up), then accuracy."""
    return scores.get("mcc", -1.0), scores.get("accuracy", 0.0)


def evaluate(
    frame: pd.DataFrame,
    split: Split,
    *,
    step: int = 21,
    embargo: int = 1,
    window: int | None = None,
    progress: Callable[[str], None] = lambda name: None,
) -> Evaluation:
    with _one_thread():
        return _evaluate(frame, split, progress, {"step": step, "embargo": embargo, "window": window})


def _evaluate(frame: pd.DataFrame, split: Split, progress: Callable[[str], None], wf: dict) -> Evaluation:
    frame = frame[frame["target_date"] >= np.datetime64(split.train_start)].reset_index(drop=True)
    label = frame["label"].to_numpy(dtype=float)
    validation, test, chosen, rows = {}, {}, {}, []
    for cand in candidates():
        progress(cand.name)
        scored = []
        for setting in cand.settings or [None]:
            prob = predict_period(frame, cand, setting, split.val_start, split.test_start, **wf)
            scored.append((setting, metrics(label, prob.to_numpy()), prob))
        setting, validation[cand.name], val_prob = max(scored, key=lambda s: _rank(s[1]))
        chosen[cand.name] = setting
        prob = predict_period(frame, cand, setting, split.test_start, split.test_end, **wf)
        test[cand.name] = metrics(label, prob.to_numpy())
        for period, p in (("validation", val_prob), ("test", prob)):
            part = frame.loc[p.notna(), ["ticker", "date", "target_date", "label", "next_ret"]].assign(
                period=period, model=cand.name, prob=p[p.notna()]
            )
            rows.append(part)
    for period, scores in (("validation", validation), ("test", test)):
        if not any("mcc" in v for v in scores.values()):
            raise MegasenseInputError(
                f"no labelled days in the {period} period ({split.val_start.date()} to {split.test_start.date()} "
                f"to {split.test_end.date()}); check the dates against the prices"
            )
    selected = max(validation, key=lambda k: _rank(validation[k]))
    return Evaluation(validation, test, selected, chosen, pd.concat(rows, ignore_index=True))


def feature_importance(frame: pd.DataFrame, split: Split, chosen: dict[str, dict | None]) -> pd.DataFrame:
    """Permutation importance (drop in validation AUC when a feature is shuffled) of ``logreg`` and ``gbm``
    fitted on the training period: the test period is not looked at."""
    dates = frame["target_date"]
    train = frame[
        frame["label"].notna() & (dates >= np.datetime64(split.train_start)) & (dates < np.datetime64(split.val_start))
    ]
    val = frame[
        frame["label"].notna() & (dates >= np.datetime64(split.val_start)) & (dates < np.datetime64(split.test_start))
    ]
    with _one_thread():
        rows = list(_importance(train, val, chosen))
    return pd.DataFrame(rows, columns=["model", "feature", "importance", "std"])


def _importance(train: pd.DataFrame, val: pd.DataFrame, chosen: dict[str, dict | None]):
    from sklearn.inspection import permutation_importance

    for cand in candidates():
        if cand.name not in ("logreg", "gbm") or train.empty or val["label"].nunique() < 2:
            continue
        model = cand.make(**chosen[cand.name]).fit(train[FEATURES].to_numpy(), train["label"].astype(int).to_numpy())
        result = permutation_importance(
            model,
            val[FEATURES].to_numpy(),
            val["label"].astype(int).to_numpy(),
            scoring="roc_auc",
            n_repeats=5,
            random_state=0,
        )
        for name, mean, std in zip(FEATURES, result.importances_mean, result.importances_std):
            yield {"model": cand.name, "feature": name, "importance": float(mean), "std": float(std)}
