"""matplotlib plumbing the plots share: a new Axes when none is given, legends outside the data,
category ticks that do not collide, colours, and dollar tick formatters.

matplotlib is imported inside each function, so importing `rb.plot` does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replibatch._table.summary import format_usd
from replibatch._view.plotlabels import tick_decimals, tick_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "category_ticks",
    "colours",
    "log_usd_formatter",
    "new_axes",
    "outside_legend",
    "pyplot",
    "root_figure",
    "usd_formatter",
]


def pyplot() -> Any:
    """matplotlib.pyplot, imported on first use. Raises ImportError naming the package to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("replibatch.plot needs matplotlib: pip install matplotlib") from exc
    return plt


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """`ax` itself, or the Axes of a new constrained-layout figure of `figsize` inches."""
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


# A legend at the right takes about this many inches per character of its longest label (at
# "small" size) plus the marker and padding; past _SIDE_LEGEND_SHARE of the figure's width it
# goes below the axes instead, so the plot keeps the width.
_LEGEND_IN_PER_CHAR = 0.075
_LEGEND_EXTRA_IN = 0.6
_SIDE_LEGEND_SHARE = 0.25


def root_figure(ax: Axes) -> Figure:
    """The top-level figure `ax` is drawn on: a subfigure has no size of its own, and its dpi
    transform is its root's."""
    from matplotlib.figure import SubFigure

    figure = ax.figure
    return figure.figure if isinstance(figure, SubFigure) else figure


def outside_legend(ax: Axes, title: str) -> None:
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
    rc = rc_params()
    tick_pt = FontProperties(size=rc["xtick.labelsize"]).get_size_in_points()
    label_pt = ax.xaxis.label.get_fontproperties().get_size_in_points()
    below_pt = (rc["xtick.major.size"] + rc["xtick.major.pad"] + 1.3 * tick_pt
                + ax.xaxis.labelpad + 1.3 * label_pt + 4)
    anchor = offset_copy(ax.transAxes, fig=root_figure(ax), y=-below_pt, units="points")
    ax.legend(title=title, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=anchor,
              ncols=ncols, fontsize="small", frameon=False, borderaxespad=0)


def rc_params() -> Any:
    """matplotlib's current rcParams (imported on first use)."""
    import matplotlib

    return matplotlib.rcParams


def category_ticks(ax: Axes, labels: list[Any], *, axis: str = "x") -> None:
    """One tick per category on `axis`, labelled with `tick_label`; x labels are rotated only
    when they would run into each other."""
    texts = [tick_label(v) for v in labels]
    positions = np.arange(len(texts))
    if axis == "y":
        ax.set_yticks(positions, [t.replace("\n", "") for t in texts])
        return
    ax.set_xticks(positions, texts)
    longest = max((len(line) for t in texts for line in t.split("\n")), default=0)
    # Rotate only when the labels would run into each other side by side (~0.08 in per character
    # at the default 10 pt font).
    figure_width = root_figure(ax).get_figwidth() * ax.get_position().width
    if texts and longest * 0.08 > 0.9 * figure_width / len(texts):
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")
            tick.set_rotation_mode("anchor")


def colours(n: int) -> list[Any]:
    """`n` RGBA colours from tab10 (tab20 past ten)."""
    pyplot()
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def usd_formatter() -> Any:
    """Dollar tick labels, all with the decimals the tick step needs (``$0.000125``)."""
    from matplotlib.ticker import Formatter

    class USDFormatter(Formatter):
        decimals: int | None = None

        def set_locs(self, locs: Any) -> None:
            super().set_locs(locs)
            self.decimals = tick_decimals(locs)

        def __call__(self, value: float, pos: int | None = None) -> str:
            return format_usd(value, self.decimals)

    return USDFormatter()


def log_usd_formatter() -> Any:
    """Dollar labels for a log axis's decades (``$0.00001``, ``$0.001``), not ``10^-5``."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: format_usd(value))
