"""`leaderboard`: one row per model (or any columns) saying which is better, cheaper and faster.

Per group of `by`: ``rows``, ``succeeded``, ``failures``, the mean score with a confidence
interval (``score``, ``score_low``, ``score_high``), the ``win_rate`` in pairwise comparisons
per prompt, ``cost_per_row`` (mean ``cost_usd`` of the rows that report one), ``total_cost``, and
``p50_latency_s`` / ``p95_latency_s`` of the rows that succeeded.

The interval is a percentile bootstrap of the mean (2,000 resamples, fixed seed, so the same
scores give the same interval; a normal interval past 5,000 rows). Win rate: within each prompt
(the `per` columns), every pair of groups that both have a score there is compared on their mean
score for that prompt; a win counts 1, a tie 0.5. The score may be a ``score_*`` column (from
`score` or `judge`) or a human rating (``"stars"``, ``"thumbs"``, ``"best"``; read with
`replibatch.ratings`): with ``"best"`` the row rated best of its prompt wins against the others.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from replibatch._evaluate.score import SCORE_PREFIX, score_columns
from replibatch._store.cache import ResultCache
from replibatch._table.summary import format_usd
from replibatch.errors import ConfigurationError

__all__ = ["Leaderboard", "bootstrap_interval", "leaderboard", "win_rates"]

_RATING_KINDS = ("stars", "thumbs", "best")
_BOOTSTRAP_SAMPLES = 2000
_BOOTSTRAP_MAX_ROWS = 5000


def bootstrap_interval(values: np.ndarray, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A `confidence` interval of the mean of `values` (NaNs dropped); (NaN, NaN) under 2 values."""
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    if float(values.min()) == float(values.max()):
        return float(values[0]), float(values[0])
    alpha = (1.0 - confidence) / 2
    if n > _BOOTSTRAP_MAX_ROWS:
        z = 1.959963984540054 if confidence == 0.95 else _normal_quantile(1 - alpha)
        half = z * float(values.std(ddof=1)) / math.sqrt(n)
        mean = float(values.mean())
        return mean - half, mean + half
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, n, size=(_BOOTSTRAP_SAMPLES, n))].mean(axis=1)
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _normal_quantile(p: float) -> float:
    # Bisection on erf: exact enough for an interval, and no scipy needed.
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = (low + high) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def win_rates(
    keys: list[tuple[Any, ...]], prompts: list[tuple[Any, ...]], scores: np.ndarray
) -> dict[tuple[Any, ...], float]:
    """Per group key: (wins + ties/2) / comparisons over prompts (see the module docstring).

    Groups never compared (alone on every prompt, or without scores) are left out.
    """
    per_prompt: dict[tuple[Any, ...], dict[tuple[Any, ...], list[float]]] = {}
    for key, prompt, value in zip(keys, prompts, scores, strict=False):
        if not math.isnan(value):
            per_prompt.setdefault(prompt, {}).setdefault(key, []).append(float(value))
    wins: dict[tuple[Any, ...], float] = {}
    games: dict[tuple[Any, ...], int] = {}
    for groups in per_prompt.values():
        means = {key: sum(v) / len(v) for key, v in groups.items()}
        for key, mine in means.items():
            for other, theirs in means.items():
                if other == key:
                    continue
                games[key] = games.get(key, 0) + 1
                wins[key] = wins.get(key, 0.0) + (1.0 if mine > theirs else 0.5 if mine == theirs else 0.0)
    return {key: wins[key] / games[key] for key in games}


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _score_values(res: pd.DataFrame, score: str | None, cache: Any,
                  per: list[str]) -> tuple[str | None, np.ndarray]:
    if score is None:
        found = score_columns(res)
        if not found:
            return None, np.full(len(res), np.nan)
        score = found[0]
    kind = score.removeprefix("rating_")
    if score not in res.columns and kind in _RATING_KINDS:
        from replibatch._evaluate.ratings import ratings

        # "best" is best of a prompt: the board's `per` columns say what a prompt is.
        values = ratings(res, kind, group=per or None, cache=cache)
        return f"rating_{kind}", values.to_numpy(dtype=float)
    column = score if score in res.columns else f"{SCORE_PREFIX}{score}"
    if column not in res.columns:
        raise ConfigurationError(
            f"score {score!r} is not a column of the frame (score columns: "
            f"{', '.join(score_columns(res)) or 'none'}; or a rating: stars, thumbs, best)"
        )
    return column, pd.to_numeric(res[column], errors="coerce").to_numpy(dtype=float)


def leaderboard(
    res: pd.DataFrame,
    by: str | Sequence[str] = "model",
    score: str | None = None,
    *,
    per: str | Sequence[str] | None = "prompt",
    confidence: float = 0.95,
    cache: bool | str | os.PathLike[str] | ResultCache = True,
) -> Leaderboard:
    """Rank the groups of `by` in `res` (see the module docstring); best mean score first.

    `score`: a column (``"score_judge"`` or just ``"judge"``), a rating kind (``"stars"``,
    ``"thumbs"``, ``"best"``), or None for the first ``score_*`` column (no score columns: the
    board ranks by nothing and shows counts, cost and latency). `per`: the columns that make a
    prompt for win rates (None: no win rates). `cache`: where ratings are read from.

    Raises ConfigurationError (a ValueError) for a non-frame, a missing `by`/`per` column or an
    unknown score, or a `confidence` outside (0, 1).
    """
    if not isinstance(res, pd.DataFrame):
        raise ConfigurationError(f"leaderboard() needs a DataFrame, got {type(res).__name__}")
    by_columns, per_columns = _as_list(by), _as_list(per)
    if not by_columns:
        raise ConfigurationError("by must name at least one column")
    for name in by_columns + per_columns:
        if name not in res.columns:
            raise ConfigurationError(f"column {name!r} is not in the frame")
    if not 0 < confidence < 1:
        raise ConfigurationError(f"confidence must be between 0 and 1, got {confidence!r}")
    score_name, scores = _score_values(res, score, cache, per_columns)
    succeeded = ((res["status"] == "succeeded").to_numpy(dtype=bool, na_value=False)
                 if "status" in res.columns else np.ones(len(res), dtype=bool))
    scores = np.where(succeeded, scores, np.nan)

    keys = list(zip(*(res[c].tolist() for c in by_columns), strict=True))
    prompts = list(zip(*(res[c].tolist() for c in per_columns), strict=True)) if per_columns else []
    wins = win_rates(keys, prompts, scores) if per_columns and score_name else {}
    missing = pd.Series(np.nan, index=res.index)
    cost = pd.to_numeric(res.get("cost_usd", missing), errors="coerce").to_numpy(dtype=float)
    latency = pd.to_numeric(res.get("latency_s", missing), errors="coerce").to_numpy(dtype=float)

    positions: dict[tuple[Any, ...], list[int]] = {}
    for i, key in enumerate(keys):
        positions.setdefault(key, []).append(i)
    records = []
    for key, where in positions.items():
        at = np.array(where)
        ok = succeeded[at]
        mine = scores[at]
        low, high = bootstrap_interval(mine, confidence)
        costs = cost[at][~np.isnan(cost[at])]
        times = latency[at][ok]
        times = times[~np.isnan(times)]
        records.append({
            **dict(zip(by_columns, key, strict=False)),
            "rows": len(at),
            "succeeded": int(ok.sum()),
            "failures": int(len(at) - ok.sum()),
            "scored": int((~np.isnan(mine)).sum()),
            "score": float(np.nanmean(mine)) if (~np.isnan(mine)).any() else math.nan,
            "score_low": low,
            "score_high": high,
            "win_rate": wins.get(key, math.nan),
            "cost_per_row": float(costs.mean()) if len(costs) else math.nan,
            "total_cost": float(costs.sum()) if len(costs) else math.nan,
            "p50_latency_s": float(np.quantile(times, 0.5)) if len(times) else math.nan,
            "p95_latency_s": float(np.quantile(times, 0.95)) if len(times) else math.nan,
        })
    frame = pd.DataFrame.from_records(records)
    frame = frame.sort_values(["score", "win_rate", "cost_per_row"], ascending=[False, False, True],
                              na_position="last", kind="stable")
    frame = frame.set_index(by_columns if len(by_columns) > 1 else by_columns[0])
    return Leaderboard(frame, score_name, confidence)


class Leaderboard:
    """The ranked table: `frame` for code (one row per group), `_repr_html_` for people."""

    def __init__(self, frame: pd.DataFrame, score: str | None, confidence: float) -> None:
        self.frame = frame
        self.score = score
        self.confidence = confidence

    def __repr__(self) -> str:
        return f"<Leaderboard of {len(self.frame)} by {self.score or 'no score'}>\n{self.frame}"

    def __len__(self) -> int:
        return len(self.frame)

    def _repr_html_(self) -> str:
        return self.to_html()

    def to_html(self) -> str:
        """The board as an HTML fragment: rank, score with its interval drawn as a bar, win rate,
        cost and latency; the best value of each column in bold. Every label is escaped."""
        esc = html.escape
        f = self.frame
        finite = f["score_high"].dropna().tolist() + f["score"].dropna().tolist()
        top = max(finite) if finite else 1.0
        low_end = min(0.0, min([*f["score_low"].dropna().tolist(), 0.0]))
        span = (top - low_end) or 1.0
        best = {
            "score": f["score"].max(), "win_rate": f["win_rate"].max(),
            "cost_per_row": f["cost_per_row"].min(), "p50_latency_s": f["p50_latency_s"].min(),
        }

        def bold(column: str, value: float, text: str) -> str:
            wins = len(f) > 1 and not math.isnan(value) and value == best[column]
            return f"<b>{text}</b>" if wins else text

        rows = []
        for rank, (key, row) in enumerate(f.iterrows(), start=1):
            label = " · ".join(map(str, key)) if isinstance(key, tuple) else str(key)
            if math.isnan(row["score"]):
                score_html = '<span class="rb-none">—</span>'
            else:
                low, high = row["score_low"], row["score_high"]
                interval = ("" if math.isnan(low)
                            else f' <span class="rb-ci">[{low:.2f}, {high:.2f}]</span>')
                left = (0 if math.isnan(low) else (low - low_end) / span) * 100
                width = (0 if math.isnan(high) else (high - low) / span) * 100
                mean = (row["score"] - low_end) / span * 100
                bar = ('<div class="rb-bar">'
                       f'<div class="rb-bar-ci" style="left:{left:.1f}%;width:{width:.1f}%"></div>'
                       f'<div class="rb-bar-mean" style="left:{mean:.1f}%"></div></div>')
                score_html = bold("score", row["score"], f"{row['score']:.2f}") + interval + bar
            win_rate, cost_per_row, p50_s = row["win_rate"], row["cost_per_row"], row["p50_latency_s"]
            win = "—" if math.isnan(win_rate) else bold("win_rate", win_rate, f"{win_rate:.0%}")
            cost = ("—" if math.isnan(cost_per_row)
                    else bold("cost_per_row", cost_per_row, format_usd(cost_per_row)))
            p50 = "—" if math.isnan(p50_s) else bold("p50_latency_s", p50_s, f"{p50_s:.3g} s")
            p95 = "—" if math.isnan(row["p95_latency_s"]) else f"{row['p95_latency_s']:.3g} s"
            fails = f'<span class="rb-bad">{int(row["failures"])}</span>' if row["failures"] else "0"
            rows.append(
                f"<tr><td>{rank}</td><th scope='row' title='{esc(label)}'>{esc(label)}</th>"
                f"<td>{score_html}</td><td>{win}</td><td>{int(row['succeeded'])}/{int(row['rows'])}</td>"
                f"<td>{fails}</td><td>{cost}</td><td>{p50}</td><td>{p95}</td></tr>"
            )
        what = esc(self.score or "no score")
        head = ("<tr><th>#</th><th>" + esc(" · ".join(map(str, f.index.names))) + "</th>"
                f"<th>{what} (mean, {self.confidence:.0%} CI)</th><th>win rate</th><th>succeeded</th>"
                "<th>failures</th><th>cost / row</th><th>p50 latency</th><th>p95 latency</th></tr>")
        return (f"<style>{_CSS}</style><div class='rb-board'><table><thead>{head}</thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>")


_CSS = """
.rb-board table { border-collapse: collapse; font-family: system-ui, sans-serif; font-size: 13px; }
.rb-board table th, .rb-board table td { padding: 4px 10px; border-bottom: 1px solid rgba(128,128,128,.3);
  text-align: left !important; vertical-align: middle; color: inherit; }
.rb-board thead th { font-weight: 600; border-bottom: 2px solid rgba(128,128,128,.6); }
.rb-board tbody th { font-weight: 600; max-width: 28em; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.rb-board .rb-ci { opacity: .7; font-size: 11px; }
.rb-board .rb-bar { position: relative; height: 6px; width: 160px; margin-top: 3px;
  background: rgba(128,128,128,.15); border-radius: 3px; }
.rb-board .rb-bar-ci { position: absolute; top: 0; height: 6px; background: rgba(66,133,244,.45);
  border-radius: 3px; }
.rb-board .rb-bar-mean { position: absolute; top: -2px; width: 2px; height: 10px;
  background: rgb(30,90,200); }
.rb-board .rb-bad { color: #c0392b; font-weight: 600; }
.rb-board .rb-none { opacity: .5; }
"""
