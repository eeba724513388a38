"""A self-contained HTML report of a run: summary, per-model table, plots and the comparison.

    from replibatch._view.report import write_report
    write_report(res, "report.html")

Everything is embedded in the one file (plots as base64 PNGs drawn with the Agg backend, output
images as data URIs by `replibatch.compare`), so the page can be mailed or archived and still
shows everything after the cache or Replicate's copies are gone. Drawing never touches pyplot's
global state, so building a report from a notebook leaves its figures and backend alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from replibatch import plot
from replibatch._store.atomic import atomic_write
from replibatch._table.frame import ADDED_COLUMNS, MODEL_COLUMN, SAMPLE_COLUMN, TIMELINE_COLUMNS
from replibatch._table.summary import format_summary, format_usd, summarize
from replibatch._view.compare import compare, finite_number, format_seconds
from replibatch._view.media import CSS as MEDIA_CSS
from replibatch._view.media import MediaRenderer, is_missing
from replibatch._view.theme import PAGE_CSS
from replibatch.errors import ConfigurationError

__all__ = ["atomic_write", "build_report", "parameter_columns", "write_report"]

_NOT_PARAMETERS = ADDED_COLUMNS | {SAMPLE_COLUMN}
# More distinct values than this and a column is data (prompts), not a swept parameter.
_MAX_PARAMETER_VALUES = 12
# At most this many comparison columns before further parameters become badges inside cells.
_MAX_COMPARISON_COLUMNS = 8
_VARIANT = "__rb_variant"  # the comparison's column label; compare() never shows its name

_PAGE_CSS = PAGE_CSS + """
body { margin: 24px; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 14px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid var(--rb-border); padding-bottom: 4px; }
.rb-meta { color: var(--rb-muted); margin: 0 0 12px; }
.rb-summary { font-size: 15px; background: var(--rb-head-bg); border: 1px solid var(--rb-border);
  border-radius: 6px; padding: 10px 14px; display: inline-block; }
table.rb-stats { border-collapse: collapse; font-size: 13px; }
table.rb-stats th, table.rb-stats td { border: 1px solid var(--rb-border); padding: 5px 10px;
  text-align: right; }
table.rb-stats th:first-child, table.rb-stats td:first-child { text-align: left; }
table.rb-stats thead th { background: var(--rb-head-bg); }
.rb-plots { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.rb-plots figure { box-sizing: border-box; margin: 0; border: 1px solid var(--rb-border);
  border-radius: 6px; padding: 6px; background: #fff; }
.rb-plots img { display: block; max-width: 640px; height: auto; }
.rb-plots figure.rb-wide { flex-basis: 100%; }
.rb-plots figure.rb-wide img { max-width: min(100%, 1300px); }
.rb-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.rb-card { border: 1px solid var(--rb-border); border-radius: 6px; padding: 8px; background: var(--rb-bg);
  overflow: hidden; }
.rb-card-title { font-weight: 600; margin-bottom: 6px; overflow-wrap: anywhere; }
.rb-note { color: var(--rb-muted); font-size: 13px; }
.rb-errors th, .rb-errors td { text-align: left !important; }
"""


def parameter_columns(res: pd.DataFrame, *, exclude: Sequence[str] = ()) -> list[str]:
    """Columns that look like swept parameters: not result columns, not in `exclude`, with 2 to 12
    distinct values that repeat across rows (a column of distinct prompts is data, not a sweep)."""
    found = []
    for name in res.columns:
        if name in _NOT_PARAMETERS or name in exclude:
            continue
        distinct = res[name].map(_hashable).nunique(dropna=False)
        if 2 <= distinct <= _MAX_PARAMETER_VALUES and distinct < len(res):
            found.append(name)
    return found


def build_report(
    res: pd.DataFrame,
    *,
    title: str = "replibatch report",
    index: str | None = None,
    parameters: Sequence[str] | None = None,
    max_rows: int = 200,
    source: str | None = None,
) -> str:
    """The report of result frame `res` as one self-contained HTML page.

    `index`: the column whose values make the comparison's rows (default ``prompt`` when present,
    else the first input column). `parameters`: the swept columns that become comparison columns
    and plot axes beside ``model`` (default: guessed by `parameter_columns`). `max_rows`: at most
    this many comparison rows are shown (the plots and tables always use every row). `source`:
    a line saying where the results came from (e.g. the input file), shown under the title.

    Raises ConfigurationError when `res` is not a result frame (no ``status`` column) or is
    empty, or when `index` is not one of its columns.
    """
    if not isinstance(res, pd.DataFrame) or "status" not in res.columns:
        raise ConfigurationError("a report needs a result frame from replibatch.run (no 'status' column)")
    if len(res) == 0:
        raise ConfigurationError("the result frame is empty: there is nothing to report")
    res = res.reset_index(drop=True)
    index = index or _default_index(res)
    if index not in res.columns:
        raise ConfigurationError(f"column {index!r} is not in the result frame")
    if parameters is None:
        parameters = parameter_columns(res, exclude=[index])
    parameters = [p for p in parameters if p in res.columns and p != index]

    summary = res.attrs.get("replibatch") or summarize(res, 0.0)
    generated = datetime.now(timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M %Z")
    meta = f"generated {generated}" + (f" · {source}" if source else "")
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="rb-meta">{html.escape(meta)}</p>',
        f'<div class="rb-summary">{html.escape(format_summary(summary))}</div>',
        "<h2>By model</h2>",
        _stats_table(res),
        _plots_section(res, parameters),
        _errors_section(res),
        _comparison_section(res, index, parameters, max_rows),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{MEDIA_CSS}{_PAGE_CSS}</style></head>"
        # The whole page is one .rb-root so its headings and tables share the views' palette.
        f'<body><div class="rb-root rb-page">{"".join(s for s in sections if s)}</div></body></html>\n'
    )


def write_report(res: pd.DataFrame, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write `build_report(res, **options)` to `path` atomically (a temp file renamed into place,
    so a crash never leaves half a page); return the path.

    Raises ConfigurationError as `build_report` does, OSError when the file cannot be written.
    """
    page = build_report(res, **options)
    return atomic_write(path, lambda tmp: tmp.write_text(page, encoding="utf-8"))


# -- sections ----------------------------------------------------------------------------------


def _default_index(res: pd.DataFrame) -> str:
    if "prompt" in res.columns:
        return "prompt"
    for name in res.columns:
        if name not in _NOT_PARAMETERS:
            return str(name)
    return MODEL_COLUMN if MODEL_COLUMN in res.columns else "status"


def _stats_table(res: pd.DataFrame) -> str:
    group = (res[MODEL_COLUMN].astype(str) if MODEL_COLUMN in res.columns
             else pd.Series("all", index=res.index))
    latency = _numbers(res, "latency_s")
    cost = _numbers(res, "cost_usd")
    cached = (res["cached"].fillna(False).astype(bool) if "cached" in res.columns
              else pd.Series(False, index=res.index))
    head = ("model", "rows", "succeeded", "not succeeded", "cached", "latency p50", "latency p95",
            "mean cost", "total cost")
    body = []
    for name in dict.fromkeys(group):
        mine = group == name
        lat = latency[mine].dropna()
        spent = cost[mine & ~cached].dropna()
        known = cost[mine].dropna()
        cells = [
            name,
            str(int(mine.sum())),
            str(int((res["status"][mine] == "succeeded").sum())),
            str(int((res["status"][mine] != "succeeded").sum())),
            str(int(cached[mine].sum())),
            format_seconds(float(lat.quantile(0.5))) if len(lat) else "—",
            format_seconds(float(lat.quantile(0.95))) if len(lat) else "—",
            format_usd(known.mean()) if len(known) else "—",
            format_usd(spent.sum()) if len(spent) else "$0",
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'<table class="rb-stats"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
        '<p class="rb-note">Total cost counts only predictions run now; cached rows keep their '
        "original timing and cost and are in the means.</p>"
    )


def _plots_section(res: pd.DataFrame, parameters: Sequence[str]) -> str:
    models = res[MODEL_COLUMN].nunique() if MODEL_COLUMN in res.columns else 0
    parameters = [p for p in parameters if res[p].map(_hashable).nunique(dropna=False) > 1]
    numeric = [p for p in parameters if pd.api.types.is_numeric_dtype(res[p])]
    # Compare models when there are several, else the first swept parameter.
    x = MODEL_COLUMN if models > 1 or not parameters else parameters[0]
    hue = MODEL_COLUMN if models > 1 else (parameters[0] if parameters else None)
    wanted: list[tuple[str, Callable[[Any], Any], tuple[float, float]]] = []
    wide = {"timeline"}
    if "latency_s" in res.columns and x in res.columns:
        wanted.append(("latency", lambda ax: plot.latency(res, x=x, ax=ax), (6.4, 4.2)))
    if "cost_usd" in res.columns and x in res.columns:
        wanted.append(("cost", lambda ax: plot.cost(res, x=x, ax=ax), (6.4, 4.2)))
    if {"latency_s", "cost_usd"} <= set(res.columns):
        wanted.append(
            ("cost vs latency", lambda ax: plot.cost_vs_latency(res, hue=hue, ax=ax), (6.4, 4.2))
        )
    if len(numeric) >= 2:
        a, b = numeric[0], numeric[1]
        wanted.append(
            ("heatmap", lambda ax: plot.heatmap(res, x=a, y=b, value="latency_s", ax=ax), (6.4, 4.2))
        )
    # Only predictions run now have a place in time; an all-cached run has no timeline.
    if set(TIMELINE_COLUMNS) <= set(res.columns) and len(plot.timeline_spans(res)):
        height = min(9.0, max(3.0, 0.05 * len(res) + 2.0))
        wanted.append(("timeline", lambda ax: plot.timeline(res, ax=ax), (13.0, height)))

    figures, skipped = [], []
    for name, draw, size in wanted:
        png = _png(draw, size)
        if png is None:
            skipped.append(name)
            continue
        figures.append(
            f'<figure class="{"rb-wide" if name in wide else ""}"><img alt="{html.escape(name)} plot" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>'
        )
    note = (
        f'<p class="rb-note">Not drawn (no usable values): {html.escape(", ".join(skipped))}.</p>'
        if skipped
        else ""
    )
    if not figures:
        return f"<h2>Plots</h2>{note}" if note else ""
    return f'<h2>Plots</h2><div class="rb-plots">{"".join(figures)}</div>{note}'


def _png(draw: Callable[[Any], Any], size: tuple[float, float]) -> bytes | None:
    """Draw on a fresh Agg figure (never pyplot) and return PNG bytes; None when the plot has
    nothing to show (the plot functions raise ConfigurationError or ValueError then)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    try:
        with warnings.catch_warnings():
            # e.g. singular limits when every value is equal: matplotlib copes, the log need not say.
            warnings.simplefilter("ignore", UserWarning)
            draw(figure.subplots())
    except (ConfigurationError, ValueError, TypeError, KeyError):
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _errors_section(res: pd.DataFrame) -> str:
    failed = res[res["status"] != "succeeded"]
    if failed.empty:
        return ""
    errors = failed["error"] if "error" in failed.columns else pd.Series("", index=failed.index)
    counts = (
        pd.DataFrame({"status": failed["status"].astype(str), "error": errors.fillna("").astype(str)})
        .value_counts(sort=True)
        .head(20)
    )
    rows = "".join(
        f"<tr><td>{html.escape(status)}</td><td>{count}</td><td>{html.escape(error[:300])}</td></tr>"
        for (status, error), count in counts.items()
    )
    return (
        f"<h2>Rows that did not succeed ({len(failed)})</h2>"
        '<table class="rb-stats rb-errors"><thead><tr><th>status</th><th>rows</th><th>error</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _comparison_section(
    res: pd.DataFrame, index: str, parameters: Sequence[str], max_rows: int
) -> str:
    keys = res[index].map(_hashable)
    shown_keys = list(dict.fromkeys(keys))[:max_rows]
    shown = res[keys.isin(shown_keys)].copy()
    axes = _comparison_axes(shown, parameters)
    if axes:
        # One labelled column per combination of the swept values ("temperature=0.2 · model-b").
        shown[_VARIANT] = [
            " · ".join(
                str(row[name]) if name == MODEL_COLUMN else f"{name}={row[name]}" for name in axes
            )
            for _, row in shown[axes].iterrows()
        ]
        # The comparison scrolls in its own box, so its header row and prompt column stay in view.
        body = compare(shown, index=index, columns=_VARIANT, values="output")._repr_html_()
    else:
        # Nothing to compare side by side: a grid of cards reads better than one tall column.
        body = _cards(shown, index)
    total = keys.nunique()
    note = (
        f'<p class="rb-note">Showing the first {len(shown_keys)} of {total} values of '
        f"{html.escape(index)}.</p>"
        if total > len(shown_keys)
        else ""
    )
    return f"<h2>Outputs by {html.escape(index)}</h2>{note}{body}"


def _comparison_axes(res: pd.DataFrame, parameters: Sequence[str]) -> list[str]:
    """Model (when it varies) and swept parameters, as many as fit in a readable table."""
    candidates = ([MODEL_COLUMN] if MODEL_COLUMN in res.columns else []) + list(parameters)
    axes, width = [], 1
    for name in candidates:
        distinct = res[name].map(_hashable).nunique(dropna=False)
        if distinct < 2:
            continue
        if width * distinct > _MAX_COMPARISON_COLUMNS:
            break
        axes.append(name)
        width *= distinct
    return axes


def _cards(res: pd.DataFrame, index: str) -> str:
    renderer = MediaRenderer(max_text=600, max_px=384)
    cards = []
    for _, row in res.iterrows():
        parts = [
            f'<div class="rb-card-title">{html.escape(str(row[index]))}</div>',
            renderer.render(row.get("output")),
        ]
        status = row.get("status")
        if status != "succeeded":
            error = row.get("error")
            reason = f"{status}: {error}" if not is_missing(error) else str(status)
            parts.append(f'<div class="rb-error">{html.escape(reason[:500])}</div>')
        badges = [html.escape(str(row[MODEL_COLUMN]))] if MODEL_COLUMN in res.columns else []
        latency = finite_number(row.get("latency_s"))
        if latency is not None:
            badges.append(format_seconds(latency))
        cost = finite_number(row.get("cost_usd"))
        if cost is not None:
            badges.append(format_usd(cost))
        if not is_missing(row.get("cached")) and bool(row.get("cached")):
            badges.append("cached")
        parts.append(
            '<div class="rb-badges">'
            + "".join(f'<span class="rb-badge">{badge}</span>' for badge in badges)
            + "</div>"
        )
        cards.append(f'<div class="rb-card">{"".join(parts)}</div>')
    return (f'<style>{MEDIA_CSS}</style>'
            f'<div class="rb-root"><div class="rb-cards">{"".join(cards)}</div></div>')


def _numbers(res: pd.DataFrame, column: str) -> pd.Series:
    if column not in res.columns:
        return pd.Series(math.nan, index=res.index)
    return pd.to_numeric(res[column], errors="coerce").astype(float)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
