"""The drawing of `rb.plot`'s plots: latency, cost, cost vs latency, heatmap and the run's timeline.

Each takes the frame first, column names as keywords and ``ax=`` (a new figure when None), and
returns the Axes; what it draws comes from `plotstats` (pure), its text from `plotlabels`, its
scales from `plotscale`. See `replibatch.plot` for which rows each plot shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

from replibatch._view.plotaxes import (
    category_ticks,
    colours,
    log_usd_formatter,
    new_axes,
    outside_legend,
    usd_formatter,
)
from replibatch._view.plotlabels import axis_label, left_out_note, sentence_case, short_label, usd
from replibatch._view.plotscale import padded_limits, palette, submit_rates, wants_log
from replibatch._view.plotstats import (
    cost_summary,
    first_seen,
    heatmap_table,
    latency_groups,
    numeric,
    peak_in_flight,
    require_columns,
    timeline_spans,
)
from replibatch.errors import ConfigurationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["cost", "cost_vs_latency", "heatmap", "latency", "timeline"]

_QUEUE_COLOUR = "#f2a541"
_PREDICT_COLOUR = "#3b75af"
_OTHER_COLOUR = "#c9ced6"
_FAILED_COLOUR = "#c0392b"


def latency(
    data: pd.DataFrame,
    *,
    x: str = "model",
    y: str = "latency_s",
    hue: str | None = None,
    logy: bool | None = None,
    ax: Axes | None = None,
) -> Axes:
    """A box per `x` value (split by `hue`), with every row drawn as a point over it.

    Colours follow `hue`, or `x` without one, with the frame's one mapping (`plotscale.palette`):
    a model has the same colour in every plot of the frame. `logy`: a log y axis (default: when
    the values span more than two decades). Raises ConfigurationError when a column is missing.
    """
    groups = latency_groups(data, x=x, y=y, hue=hue)
    categories = list(dict.fromkeys(c for c, _ in groups))
    levels = list(dict.fromkeys(h for _, h in groups))
    inches = 1.6 * len(categories) + 0.6 * len(categories) * max(0, len(levels) - 1) + 1.5
    ax = new_axes(ax, (max(5.0, min(16.0, inches)), 4.5))
    by_value = palette(data, hue if hue is not None else x)
    width = 0.8 / len(levels) if levels else 0.8
    rng = np.random.default_rng(0)  # fixed jitter: the same frame always draws the same plot
    for j, level in enumerate(levels):
        offset = (j - (len(levels) - 1) / 2) * width
        positions, samples = [], []
        for i, category in enumerate(categories):
            if (category, level) in groups:
                positions.append(i + offset)
                samples.append(groups[(category, level)])
        boxes = ax.boxplot(
            samples,
            positions=positions,
            widths=width * 0.7,
            patch_artist=True,
            manage_ticks=False,
            showfliers=False,  # every point is drawn below, so fliers would be drawn twice
            medianprops={"color": "black"},
        )
        keys = [level if hue is not None else c for c in categories if (c, level) in groups]
        for box, key in zip(boxes["boxes"], keys, strict=False):
            colour = by_value.get(key, (0.3, 0.3, 0.3, 1.0))
            box.set_facecolor((*colour[:3], 0.35))
            box.set_edgecolor(colour)
        if hue is not None:
            boxes["boxes"][0].set_label(short_label(level, 40))
        for position, sample, key in zip(positions, samples, keys, strict=False):
            jitter = rng.uniform(-width * 0.2, width * 0.2, size=len(sample))
            colour = by_value.get(key, (0.3, 0.3, 0.3, 1.0))
            ax.scatter(position + jitter, sample, s=12, color=colour, alpha=0.7, zorder=3)
    category_ticks(ax, categories)
    ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.set_xlabel(x)
    ax.set_ylabel(axis_label(y))
    every = np.concatenate(list(groups.values())) if groups else np.array([])
    log = wants_log(every, logy)
    if log:
        ax.set_yscale("log")
    ax.set_ylim(*padded_limits(every, log=log))
    ax.grid(axis="y", alpha=0.3)
    if hue is not None:
        ax.legend(title=hue, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    shown = sum(len(v) for v in groups.values())
    what = sentence_case(axis_label(y).split(" (")[0])
    ax.set_title(f"{what} by {x}{left_out_note(len(data) - shown, f'without {y}')}")
    return ax


def cost(
    data: pd.DataFrame,
    *,
    x: str = "model",
    y: str = "cost_usd",
    stat: str = "mean",
    logy: bool | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Bars of the mean cost per prediction (± one standard deviation) or, `stat="total"`, the sum.

    Bars take the frame's colour of their `x` value (the same in every plot of the frame).
    `logy`: a log y axis (default: when the bars span more than two decades, so a cheap model
    is not flattened onto $0).

    Rows with unknown cost are left out and counted in the title. Raises ConfigurationError for
    a missing column or a `stat` other than "mean" or "total".
    """
    if stat not in ("mean", "total"):
        raise ConfigurationError(f"stat must be 'mean' or 'total', got {stat!r}")
    summary = cost_summary(data, x=x, y=y)
    shown = summary[summary["n"] > 0]
    ax = new_axes(ax, (max(5.0, min(16.0, 1.6 * len(shown) + 1.5)), 4.5))
    heights = shown[stat].to_numpy(dtype=float)
    errors = shown["sd"].to_numpy(dtype=float) if stat == "mean" else None
    by_value = palette(data, x)
    colours = [by_value.get(value, (0.3, 0.3, 0.3, 1.0)) for value in shown[x]]
    log = wants_log(heights, logy)
    ax.bar(
        np.arange(len(shown)),
        heights,
        # On a log axis the lower whisker would run below zero; show the spread linearly only.
        yerr=None if errors is None or log else np.nan_to_num(errors),
        capsize=4,
        color=[(*c[:3], 0.8) for c in colours],
        edgecolor=colours,
    )
    tops = heights + (np.nan_to_num(errors) if errors is not None else 0)
    for position, (height, top) in enumerate(zip(heights, tops, strict=True)):
        # Above the error bar, so the whisker does not strike through the number.
        ax.annotate(usd(height), (position, top), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize="small")
    category_ticks(ax, shown[x].tolist())
    ax.set_xlabel(x)
    ax.set_ylabel("mean cost per prediction (USD)" if stat == "mean" else "total cost (USD)")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(log_usd_formatter())
        low, high = padded_limits(heights, log=True)
        ax.set_ylim(low, high * 3)  # room above the bars for their labels
    else:
        ax.yaxis.set_major_formatter(usd_formatter())
        ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    unknown = int(summary["n_unknown"].sum())
    what = "Mean cost per prediction" if stat == "mean" else "Total cost"
    # On a second line: beside a long column name it would run past the axes.
    shows_errors = stat == "mean" and not log and errors is not None and np.isfinite(errors).any()
    extra = "\n(error bars: ± 1 sd)" if shows_errors else ""
    ax.set_title(f"{what} by {x}{extra}{left_out_note(unknown, 'with unknown cost')}")
    return ax


def cost_vs_latency(
    data: pd.DataFrame,
    *,
    x: str = "latency_s",
    y: str = "cost_usd",
    hue: str | None = "model",
    logy: bool | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One point per row, coloured by `hue` (the frame's one value→colour mapping). Rows missing
    either value are left out and counted. The limits hold every point with its marker. `logy`:
    a log y axis (default: when costs span more than two decades; rows with a zero value cannot
    be drawn on it and are counted as left out).

    Raises ConfigurationError when a column is missing.
    """
    require_columns(data, x, y, hue)
    xs, ys = numeric(data[x]), numeric(data[y])
    keep = np.isfinite(xs) & np.isfinite(ys)
    log = wants_log(ys[keep], logy)
    if log:
        keep &= ys > 0
    ax = new_axes(ax, (7.0, 5.0))
    levels = first_seen(data.loc[keep, hue]) if hue is not None else [None]
    by_value = palette(data, hue)
    for level in levels:
        colour = by_value.get(level, colours(1)[0])
        mask = keep & (data[hue] == level) if hue is not None else keep
        ax.scatter(
            xs[mask],
            ys[mask],
            s=28,
            alpha=0.75,
            color=colour,
            edgecolors="white",
            linewidths=0.5,
            label=None if hue is None else short_label(level, 40),
        )
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(axis_label(y))
    if log:
        ax.set_yscale("log")
        if y == "cost_usd":
            ax.yaxis.set_major_formatter(log_usd_formatter())
    elif y == "cost_usd":
        ax.yaxis.set_major_formatter(usd_formatter())
    # Limits from the data with room for the markers: never a floor set after the margins.
    ax.set_xlim(*padded_limits(xs[keep]))
    ax.set_ylim(*padded_limits(ys[keep], log=log))
    ax.grid(alpha=0.3)
    if hue is not None and levels:
        outside_legend(ax, hue)
    dropped = int(len(data) - keep.sum())
    ax.set_title(f"{sentence_case(axis_label(y).split(' (')[0])} vs {axis_label(x).split(' (')[0]}"
                 f"{left_out_note(dropped, f'without {x} or {y}')}")
    return ax


def heatmap(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    value: str = "latency_s",
    agg: str | Callable[[pd.Series], float] = "mean",
    ax: Axes | None = None,
    annot: bool = True,
    cmap: str = "viridis",
) -> Axes:
    """A metric over two parameters (e.g. temperature × max_tokens), one cell per pair.

    Raises ConfigurationError when a column is missing.
    """
    table = heatmap_table(data, x=x, y=y, value=value, agg=agg)
    size = (max(5.0, min(16.0, 1.3 * table.shape[1] + 3)), max(3.5, min(12.0, 0.6 * table.shape[0] + 2)))
    ax = new_axes(ax, size)
    grid = np.ma.masked_invalid(table.to_numpy())
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad="#eeeeee")
    image = ax.imshow(grid, cmap=colormap, aspect="auto", origin="lower")
    agg_name = agg if isinstance(agg, str) else getattr(agg, "__name__", "value")
    label = f"{agg_name} {axis_label(value)}"
    ax.figure.colorbar(image, ax=ax, label=label)
    category_ticks(ax, table.columns.tolist(), axis="x")
    category_ticks(ax, table.index.tolist(), axis="y")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if annot:
        fmt = usd if value == "cost_usd" else (lambda v: f"{v:.3g}")
        norm = image.norm
        for (row, col), cell in np.ndenumerate(table.to_numpy()):
            if np.isfinite(cell):
                # A scalar in, a scalar out: matplotlib's stubs type Norm.__call__ for arrays only.
                dark = cast(float, norm(cell)) < 0.6  # viridis-like maps are dark at the low end
                ax.text(col, row, fmt(cell), ha="center", va="center", fontsize="small",
                        color="white" if dark else "black")
    ax.set_title(f"{sentence_case(label)} by {y} × {x}")
    return ax


def timeline(
    data: pd.DataFrame, *, ax: Axes | None = None, rate_limit: float | None = None
) -> Axes:
    """One horizontal bar per prediction, ordered by submit time: queue, predict and the client's
    remaining wall time in different colours; rows that did not succeed are marked.

    The bars' left edges show the submit rate (the rate limit), their overlap the concurrency;
    the title gives the peak in flight, the sustained submit rate the run achieved (over its later
    half, so a first burst is not extrapolated) and the account's create limit: `rate_limit`, else
    the ``create_rate_per_minute`` of the run summary in ``data.attrs["replibatch"]``. Cached and
    never-submitted rows are left out and counted. Raises ConfigurationError without
    ``submitted_at``/``completed_at``.
    """
    spans = timeline_spans(data)
    n = len(spans)
    ax = new_axes(ax, (9.0, min(12.0, max(3.0, 0.18 * n + 1.8))))
    rows = np.arange(n)
    height = 0.8
    ax.barh(rows, spans["queue"], left=spans["start"], height=height, color=_QUEUE_COLOUR,
            label="queue (created → started)")
    ax.barh(rows, spans["predict"], left=spans["start"] + spans["queue"], height=height,
            color=_PREDICT_COLOUR, label="predict")
    ax.barh(rows, spans["other"], left=spans["start"] + spans["queue"] + spans["predict"],
            height=height, color=_OTHER_COLOUR, label="client: network, polling, files")
    failed = spans["status"] != "succeeded"
    if failed.any():
        ax.scatter(spans.loc[failed, "end"], rows[failed.to_numpy()], marker="x", s=30,
                   color=_FAILED_COLOUR, zorder=3, label="did not succeed")
    ax.set_ylim(n - 0.5, -0.5)  # first submitted at the top
    if 0 < n <= 200:
        # About 20 labels at most, so they never overlap however short the figure is.
        step = max(1, math.ceil(n / 20))
        ax.set_yticks(rows[::step], [short_label(r, 12) for r in spans["row"][::step]])
        ax.set_ylabel("row (by submit time)")
    else:
        ax.set_yticks([])
        ax.set_ylabel("predictions (by submit time)")
    ax.set_xlabel("seconds since first submit")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    if n:
        # Bars run from top left to bottom right, so the top right corner is free.
        handles, labels = ax.get_legend_handles_labels()
        order = sorted(range(len(labels)), key=lambda i: labels[i] == "did not succeed")
        ax.legend([handles[i] for i in order], [labels[i] for i in order],
                  loc="upper right", fontsize="small")
    dropped = len(data) - n
    rates = submit_rates(spans["start"])
    if rate_limit is None:
        summary = data.attrs.get("replibatch") if isinstance(data.attrs, dict) else None
        rate_limit = summary.get("create_rate_per_minute") if isinstance(summary, dict) else None
    parts = []
    if rates is not None:
        parts.append(f"submitted {rates.sustained_per_minute:.0f}/min sustained")
    if rate_limit is not None and np.isfinite(float(rate_limit)):
        parts.append(f"account limit {float(rate_limit):.0f}/min")
    rate = ("\n" + ", ".join(parts)) if parts else ""
    ax.set_title(f"Run timeline: {n} predictions, peak {peak_in_flight(spans)} in flight{rate}"
                 f"{left_out_note(dropped, 'cached or not submitted')}")
    return ax
