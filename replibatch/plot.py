"""Plots of a result frame: matplotlib, axes-level, seaborn-shaped.

Every plot takes the frame first, column names as keywords and ``ax=`` (a new figure when None),
and returns the Axes. The aggregation behind each plot is a pure function here too
(`latency_groups`, `cost_summary`, `heatmap_table`, `timeline_spans`), so it can be tested and
reused without drawing.

Which rows are drawn:
- timing and cost plots use every row whose value is known, cached rows included: a cached row
  keeps the timing and cost of the prediction that produced it. Rows with an unknown (NaN)
  value are left out and counted in the title.
- `timeline` shows only the predictions run in this run (cached rows and rows never submitted,
  e.g. ``skipped_budget``, are left out and counted), because only they have a place in time.
  It needs ``submitted_at`` and ``completed_at`` (client epoch seconds); ``queue_s`` and
  ``predict_s`` split each bar, ``status`` marks the rows that did not succeed.

matplotlib is imported only when something is drawn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from replibatch._view.plotscale import padded_limits, palette, submit_rates, wants_log
from replibatch.errors import ConfigurationError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "cost",
    "cost_summary",
    "cost_vs_latency",
    "heatmap",
    "heatmap_table",
    "latency",
    "latency_groups",
    "peak_in_flight",
    "score_vs_cost",
    "timeline",
    "timeline_spans",
]

_UNITS = {
    "latency_s": "latency (s)",
    "queue_s": "queue time (s)",
    "predict_s": "predict time (s)",
    "cost_usd": "cost (USD)",
    "time_to_first_token": "time to first token (s)",
    "tokens_per_second": "tokens per second",
    "input_token_count": "input tokens",
    "output_token_count": "output tokens",
}
_VERSIONED = re.compile(r"^(?P<name>[^:]+):(?P<version>[0-9a-f]{64})$")
_MAX_LABEL = 28
_QUEUE_COLOUR = "#f2a541"
_PREDICT_COLOUR = "#3b75af"
_OTHER_COLOUR = "#c9ced6"
_FAILED_COLOUR = "#c0392b"


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("replibatch.plot needs matplotlib: pip install matplotlib") from exc
    return plt


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


# A legend at the right takes about this many inches per character of its longest label (at
# "small" size) plus the marker and padding; past _SIDE_LEGEND_SHARE of the figure's width it
# goes below the axes instead, so the plot keeps the width.
_LEGEND_IN_PER_CHAR = 0.075
_LEGEND_EXTRA_IN = 0.6
_SIDE_LEGEND_SHARE = 0.25


def _root_figure(ax: Axes) -> Figure:
    """The top-level figure `ax` is drawn on: a subfigure has no size of its own, and its dpi
    transform is its root's."""
    from matplotlib.figure import SubFigure

    figure = ax.figure
    return figure.figure if isinstance(figure, SubFigure) else figure


def _outside_legend(ax: Axes, title: str) -> None:
    """A legend outside the axes (inside it would hide points): at the right when its labels are
    short, else below the x axis label in as many columns as fit the axes' width."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.transforms import offset_copy

    _, labels = ax.get_legend_handles_labels()
    if not labels:
        return
    longest = max(len(line) for label in [*labels, title] for line in label.split("\n"))
    entry_in = _LEGEND_IN_PER_CHAR * longest + _LEGEND_EXTRA_IN
    figure = ax.figure
    figure_in = figure.bbox.width / figure.dpi
    if entry_in <= _SIDE_LEGEND_SHARE * figure_in:
        ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
        return
    axes_in = figure_in * ax.get_position().width
    ncols = max(1, min(len(labels), int(axes_in // entry_in)))
    # Below the tick labels and the axis label: measure them in points.
    rc = _rc()
    tick_pt = FontProperties(size=rc["xtick.labelsize"]).get_size_in_points()
    label_pt = ax.xaxis.label.get_fontproperties().get_size_in_points()
    below_pt = (rc["xtick.major.size"] + rc["xtick.major.pad"] + 1.3 * tick_pt
                + ax.xaxis.labelpad + 1.3 * label_pt + 4)
    anchor = offset_copy(ax.transAxes, fig=_root_figure(ax), y=-below_pt, units="points")
    ax.legend(title=title, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=anchor,
              ncols=ncols, fontsize="small", frameon=False, borderaxespad=0)


def _rc() -> Any:
    import matplotlib

    return matplotlib.rcParams


def _require(data: pd.DataFrame, *columns: str | None) -> None:
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(f"expected a DataFrame, got {type(data).__name__}")
    for name in columns:
        if name is not None and name not in data.columns:
            raise ConfigurationError(f"column {name!r} is not in the frame")


def axis_label(column: str) -> str:
    """A readable axis label with units for the known result columns."""
    return _UNITS.get(column, column)


def short_label(value: Any, width: int = _MAX_LABEL) -> str:
    """A tick label: version hashes cut to 8 characters, long text trimmed with an ellipsis."""
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    elif isinstance(value, (float, np.floating)):
        text = f"{value:g}"
    else:
        text = str(value)
    match = _VERSIONED.match(text)
    if match:
        text = f"{match['name']}:{match['version'][:8]}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _numeric(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype(float)


def _order(values: pd.Series) -> list[Any]:
    """Distinct values in order of first appearance (the order the user built the frame in)."""
    return list(dict.fromkeys(v for v in values.tolist() if not _is_nan(v)))


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _note(dropped: int, what: str) -> str:
    return f"\n({dropped} row{'s' if dropped != 1 else ''} {what} not shown)" if dropped else ""


def tick_label(value: Any) -> str:
    """`short_label`, split after the owner of a long ``owner/name`` so it fits under its tick."""
    text = short_label(value, width=60)
    owner, slash, rest = text.partition("/")
    if len(text) > 20 and slash and "\n" not in text:
        return f"{short_label(owner + slash)}\n{short_label(rest)}"
    return short_label(text)


def _category_ticks(ax: Axes, labels: list[Any], *, axis: str = "x") -> None:
    texts = [tick_label(v) for v in labels]
    positions = np.arange(len(texts))
    if axis == "y":
        ax.set_yticks(positions, [t.replace("\n", "") for t in texts])
        return
    ax.set_xticks(positions, texts)
    longest = max((len(line) for t in texts for line in t.split("\n")), default=0)
    # Rotate only when the labels would run into each other side by side (~0.08 in per character
    # at the default 10 pt font).
    figure_width = _root_figure(ax).get_figwidth() * ax.get_position().width
    if texts and longest * 0.08 > 0.9 * figure_width / len(texts):
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _colours(n: int) -> list[Any]:
    _pyplot()
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# --- latency ------------------------------------------------------------------------------------


def latency_groups(
    data: pd.DataFrame, *, x: str = "model", y: str = "latency_s", hue: str | None = None
) -> dict[tuple[Any, Any], np.ndarray]:
    """Finite `y` values per (`x` value, `hue` value or None), in order of first appearance.

    Raises ConfigurationError when a column is missing.
    """
    _require(data, x, y, hue)
    values = _numeric(data[y])
    keep = np.isfinite(values)
    frame = data.loc[keep]
    groups: dict[tuple[Any, Any], np.ndarray] = {}
    hue_values = frame[hue] if hue is not None else pd.Series([None] * len(frame), index=frame.index)
    for category in _order(frame[x]):
        for level in _order(hue_values) if hue is not None else [None]:
            mask = frame[x] == category
            if hue is not None:
                mask &= hue_values == level
            if mask.any():
                groups[(category, level)] = values[keep][mask].to_numpy()
    return groups


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
    ax = _axes(ax, (max(5.0, min(16.0, inches)), 4.5))
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
    _category_ticks(ax, categories)
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
    what = _sentence(axis_label(y).split(" (")[0])
    ax.set_title(f"{what} by {x}{_note(len(data) - shown, f'without {y}')}")
    return ax


# --- cost ---------------------------------------------------------------------------------------


def cost_summary(data: pd.DataFrame, *, x: str = "model", y: str = "cost_usd") -> pd.DataFrame:
    """Per `x` value: ``n`` known costs, ``n_unknown`` NaN costs, ``mean``, ``sd``, ``total``.

    Ordered by first appearance. Raises ConfigurationError when a column is missing.
    """
    _require(data, x, y)
    values = _numeric(data[y])
    rows = []
    for category in _order(data[x]):
        sample = values[data[x] == category]
        known = sample[np.isfinite(sample)]
        rows.append(
            {
                x: category,
                "n": len(known),
                "n_unknown": len(sample) - len(known),
                "mean": known.mean() if len(known) else np.nan,
                "sd": known.std(ddof=1) if len(known) > 1 else np.nan,
                "total": known.sum() if len(known) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=[x, "n", "n_unknown", "mean", "sd", "total"])


def _usd(value: float) -> str:
    from replibatch._table.summary import format_usd

    return format_usd(value)


def _usd_formatter() -> Any:
    """Dollar tick labels, all with the decimals the tick step needs (``$0.000125``)."""
    from matplotlib.ticker import Formatter

    from replibatch._table.summary import format_usd

    class USDFormatter(Formatter):
        decimals: int | None = None

        def set_locs(self, locs: Any) -> None:
            super().set_locs(locs)
            self.decimals = _tick_decimals(locs)

        def __call__(self, value: float, pos: int | None = None) -> str:
            return format_usd(value, self.decimals)

    return USDFormatter()


def _log_usd_formatter() -> Any:
    """Dollar labels for a log axis's decades (``$0.00001``, ``$0.001``), not ``10^-5``."""
    from matplotlib.ticker import FuncFormatter

    from replibatch._table.summary import format_usd

    return FuncFormatter(lambda value, _pos: format_usd(value))


def _tick_decimals(locs: Any) -> int | None:
    """The fewest decimals (0 when every tick is whole dollars, else at least 2) that write
    every tick exactly; None when there are no finite ticks."""
    values = [float(v) for v in locs if np.isfinite(v)]
    if not values:
        return None
    scale = max(abs(v) for v in values) or 1.0
    for decimals in range(13):
        if decimals == 1:
            continue  # cents: $0.50, not $0.5
        if all(abs(v - round(v, decimals)) <= scale * 1e-9 for v in values):
            return decimals
    return 12


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
    ax = _axes(ax, (max(5.0, min(16.0, 1.6 * len(shown) + 1.5)), 4.5))
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
        ax.annotate(_usd(height), (position, top), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize="small")
    _category_ticks(ax, shown[x].tolist())
    ax.set_xlabel(x)
    ax.set_ylabel("mean cost per prediction (USD)" if stat == "mean" else "total cost (USD)")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_log_usd_formatter())
        low, high = padded_limits(heights, log=True)
        ax.set_ylim(low, high * 3)  # room above the bars for their labels
    else:
        ax.yaxis.set_major_formatter(_usd_formatter())
        ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    unknown = int(summary["n_unknown"].sum())
    what = "Mean cost per prediction" if stat == "mean" else "Total cost"
    # On a second line: beside a long column name it would run past the axes.
    shows_errors = stat == "mean" and not log and errors is not None and np.isfinite(errors).any()
    extra = "\n(error bars: ± 1 sd)" if shows_errors else ""
    ax.set_title(f"{what} by {x}{extra}{_note(unknown, 'with unknown cost')}")
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
    _require(data, x, y, hue)
    xs, ys = _numeric(data[x]), _numeric(data[y])
    keep = np.isfinite(xs) & np.isfinite(ys)
    log = wants_log(ys[keep], logy)
    if log:
        keep &= ys > 0
    ax = _axes(ax, (7.0, 5.0))
    levels = _order(data.loc[keep, hue]) if hue is not None else [None]
    by_value = palette(data, hue)
    for level in levels:
        colour = by_value.get(level, _colours(1)[0])
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
            ax.yaxis.set_major_formatter(_log_usd_formatter())
    elif y == "cost_usd":
        ax.yaxis.set_major_formatter(_usd_formatter())
    # Limits from the data with room for the markers: never a floor set after the margins.
    ax.set_xlim(*padded_limits(xs[keep]))
    ax.set_ylim(*padded_limits(ys[keep], log=log))
    ax.grid(alpha=0.3)
    if hue is not None and levels:
        _outside_legend(ax, hue)
    dropped = int(len(data) - keep.sum())
    ax.set_title(f"{_sentence(axis_label(y).split(' (')[0])} vs {axis_label(x).split(' (')[0]}"
                 f"{_note(dropped, f'without {x} or {y}')}")
    return ax


# --- heatmap ------------------------------------------------------------------------------------


def heatmap_table(
    data: pd.DataFrame,
    *,
    x: str,
    y: str,
    value: str = "latency_s",
    agg: str | Callable[[pd.Series], float] = "mean",
) -> pd.DataFrame:
    """`value` aggregated over every (`y`, `x`) pair: rows are `y` values, columns `x` values,
    both sorted; NaN where no row has a known value.

    Raises ConfigurationError when a column is missing.
    """
    _require(data, x, y, value)
    frame = pd.DataFrame({"x": data[x], "y": data[y], "v": _numeric(data[value])})
    table = frame.groupby(["y", "x"], dropna=True)["v"].agg(agg).unstack("x")
    table.index.name, table.columns.name = y, x
    return table.astype(float)


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
    ax = _axes(ax, size)
    grid = np.ma.masked_invalid(table.to_numpy())
    import matplotlib

    colormap = matplotlib.colormaps[cmap].with_extremes(bad="#eeeeee")
    image = ax.imshow(grid, cmap=colormap, aspect="auto", origin="lower")
    agg_name = agg if isinstance(agg, str) else getattr(agg, "__name__", "value")
    label = f"{agg_name} {axis_label(value)}"
    ax.figure.colorbar(image, ax=ax, label=label)
    _category_ticks(ax, table.columns.tolist(), axis="x")
    _category_ticks(ax, table.index.tolist(), axis="y")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if annot:
        fmt = _usd if value == "cost_usd" else (lambda v: f"{v:.3g}")
        norm = image.norm
        for (row, col), cell in np.ndenumerate(table.to_numpy()):
            if np.isfinite(cell):
                # A scalar in, a scalar out: matplotlib's stubs type Norm.__call__ for arrays only.
                dark = cast(float, norm(cell)) < 0.6  # viridis-like maps are dark at the low end
                ax.text(col, row, fmt(cell), ha="center", va="center", fontsize="small",
                        color="white" if dark else "black")
    ax.set_title(f"{_sentence(label)} by {y} × {x}")
    return ax


# --- timeline -----------------------------------------------------------------------------------


def timeline_spans(data: pd.DataFrame) -> pd.DataFrame:
    """One row per prediction run in this run, ordered by submit time, with seconds since the
    first submit: ``start``, ``queue``, ``predict``, ``other`` (the rest of the client's wall time:
    upload, network, polling, download), ``end``; plus ``row`` (the original index) and ``status``.

    Needs ``submitted_at`` and ``completed_at``; uses ``queue_s``, ``predict_s``, ``cached`` and
    ``status`` when present. Raises ConfigurationError when a needed column is missing.
    """
    _require(data, "submitted_at", "completed_at")
    submitted, completed = _numeric(data["submitted_at"]), _numeric(data["completed_at"])
    keep = np.isfinite(submitted) & np.isfinite(completed)
    if "cached" in data.columns:
        keep &= ~data["cached"].fillna(False).astype(bool)
    columns = ["row", "start", "queue", "predict", "other", "end", "status"]
    if not keep.any():
        return pd.DataFrame(columns=columns)

    def optional(name: str) -> np.ndarray:
        if name not in data.columns:
            return np.zeros(int(keep.sum()))
        return np.nan_to_num(_numeric(data[name])[keep].to_numpy(), nan=0.0).clip(min=0)

    start = submitted[keep].to_numpy()
    total = (completed[keep].to_numpy() - start).clip(min=0)
    # Server-side spans cannot exceed what the client saw; clip so the bar stays one length.
    queue = np.minimum(optional("queue_s"), total)
    predict = np.minimum(optional("predict_s"), total - queue)
    status = data["status"][keep] if "status" in data.columns else "succeeded"
    spans = pd.DataFrame(
        {
            "row": data.index[keep],
            "start": start - start.min(),
            "queue": queue,
            "predict": predict,
            "other": total - queue - predict,
            "end": start - start.min() + total,
            "status": np.asarray(status) if not isinstance(status, str) else status,
        },
        columns=columns,
    )
    return spans.sort_values("start", kind="stable").reset_index(drop=True)


def peak_in_flight(spans: pd.DataFrame) -> int:
    """The most predictions in flight at once (a prediction ending as another starts counts once)."""
    if spans.empty:
        return 0
    events = sorted([(t, 1) for t in spans["start"]] + [(t, -1) for t in spans["end"]],
                    key=lambda event: (event[0], event[1]))  # ends before starts at equal times
    level = peak = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    return peak


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
    ax = _axes(ax, (9.0, min(12.0, max(3.0, 0.18 * n + 1.8))))
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
                 f"{_note(dropped, 'cached or not submitted')}")
    return ax


from replibatch._view.plot_eval import score_vs_cost  # noqa: E402 - the evaluation plot lives in its own module
