import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection

from replibatch import plot
from replibatch._view import plotlabels
from replibatch.errors import ConfigurationError

VERSIONED = "acme/diffuse:" + "0123456789abcdef" * 4
MODELS = ["acme/tiny", VERSIONED, "acme/huge-model-with-a-long-name"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def res():
    """3 models × 2 temperatures × 2 max_tokens × 2 samples, some unknown costs and latencies."""
    rng = np.random.default_rng(7)
    rows = []
    submitted = 1_700_000_000.0
    for model in MODELS:
        for temperature in (0.2, 0.8):
            for max_tokens in (64, 256):
                for sample in (0, 1):
                    predict = rng.uniform(0.5, 3.0)
                    queue = rng.uniform(0.0, 1.0)
                    latency = queue + predict + 0.2
                    rows.append({
                        "prompt": "hi", "temperature": temperature, "max_tokens": max_tokens,
                        "sample": sample, "model": model, "output": "x", "status": "succeeded",
                        "error": None, "queue_s": queue, "predict_s": predict,
                        "latency_s": latency, "cost_usd": predict * 0.001, "cached": False,
                        "submitted_at": submitted, "completed_at": submitted + latency,
                    })
                    submitted += 0.25
    frame = pd.DataFrame(rows)
    frame.loc[[0, 5], "cost_usd"] = np.nan
    frame.loc[[1], "latency_s"] = np.nan
    return frame


def _tick_texts(ax, axis="x"):
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in labels]


def _points(ax):
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def test_importing_plot_does_not_import_matplotlib():
    code = "import sys, replibatch.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_labels_shorten_versions_and_long_names():
    assert plotlabels.short_label(VERSIONED) == "acme/diffuse:01234567"
    assert plotlabels.short_label("x" * 40) == "x" * 27 + "…"
    assert plotlabels.short_label(256.0) == "256" and plotlabels.short_label(0.25) == "0.25"
    assert plotlabels.tick_label("acme/huge-model-with-a-long-name") == "acme/\nhuge-model-with-a-long-name"


def test_latency_groups_drop_unknown_values(res):
    groups = plot.latency_groups(res, x="model", y="latency_s")
    assert list(groups) == [(m, None) for m in MODELS]
    assert len(groups[(MODELS[0], None)]) == 7  # row 1 has no latency
    np.testing.assert_allclose(groups[(MODELS[2], None)], res.loc[res.model == MODELS[2], "latency_s"])


def test_latency_draws_one_box_per_model_and_every_point(res):
    ax = plot.latency(res)
    assert len(ax.patches) == 3  # patch_artist boxes
    assert _points(ax) == len(res) - 1
    assert _tick_texts(ax) == [plotlabels.tick_label(m) for m in MODELS]
    assert ax.get_xlabel() == "model" and ax.get_ylabel() == "latency (s)"
    assert "Latency by model" in ax.get_title() and "1 row without latency_s" in ax.get_title()


def test_latency_with_hue_splits_boxes_and_has_a_legend(res):
    ax = plot.latency(res, hue="temperature")
    assert len(ax.patches) == 3 * 2
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "temperature"
    assert [t.get_text() for t in legend.get_texts()] == ["0.2", "0.8"]


def test_given_axes_are_drawn_on_and_returned(res):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot.latency(res, ax=left) is left
    assert plot.cost(res, ax=right) is right
    assert len(fig.axes) == 2


def test_cost_summary_counts_unknown_costs(res):
    summary = plot.cost_summary(res).set_index("model")
    assert summary["n"].tolist() == [6, 8, 8] and summary["n_unknown"].tolist() == [2, 0, 0]
    known = res.loc[(res.model == MODELS[0]), "cost_usd"].dropna()
    assert summary.loc[MODELS[0], "mean"] == pytest.approx(known.mean())
    assert summary.loc[MODELS[0], "sd"] == pytest.approx(known.std())
    assert summary.loc[MODELS[1], "total"] == pytest.approx(res.loc[res.model == MODELS[1], "cost_usd"].sum())


def test_cost_bars_with_error_bars_and_a_note_on_unknown_costs(res):
    ax = plot.cost(res)
    summary = plot.cost_summary(res)
    assert [p.get_height() for p in ax.patches] == pytest.approx(summary["mean"].tolist())
    assert len(ax.lines) > 0  # error bar whiskers
    assert ax.get_ylabel() == "mean cost per prediction (USD)"
    assert "2 rows with unknown cost" in ax.get_title()
    assert ax.texts[0].get_text().startswith("$")
    total = plot.cost(res, stat="total")
    assert [p.get_height() for p in total.patches] == pytest.approx(summary["total"].tolist())
    assert total.get_ylabel() == "total cost (USD)"


def test_cost_leaves_out_models_without_any_known_cost(res):
    res.loc[res.model == MODELS[1], "cost_usd"] = np.nan
    ax = plot.cost(res)
    assert len(ax.patches) == 2
    assert "10 rows with unknown cost" in ax.get_title()


def test_cost_rejects_unknown_stat(res):
    with pytest.raises(ConfigurationError, match="stat"):
        plot.cost(res, stat="median")


def test_cost_vs_latency_one_series_per_model(res):
    ax = plot.cost_vs_latency(res)
    series = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(series) == 3
    assert _points(ax) == len(res) - 3  # rows 0, 1, 5 miss one of the two values
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [plotlabels.short_label(m, 40) for m in MODELS]
    assert ax.get_xlabel() == "latency (s)" and ax.get_ylabel() == "cost (USD)"
    plain = plot.cost_vs_latency(res, hue=None)
    assert plain.get_legend() is None and _points(plain) == len(res) - 3


def test_heatmap_table_aggregates_over_two_parameters(res):
    table = plot.heatmap_table(res, x="temperature", y="max_tokens", value="predict_s")
    assert table.index.tolist() == [64, 256] and table.columns.tolist() == [0.2, 0.8]
    expected = res[(res.temperature == 0.8) & (res.max_tokens == 64)]["predict_s"].mean()
    assert table.loc[64, 0.8] == pytest.approx(expected)
    totals = plot.heatmap_table(res, x="temperature", y="max_tokens", value="cost_usd", agg="sum")
    assert totals.to_numpy().sum() == pytest.approx(res["cost_usd"].sum())


def test_heatmap_draws_cells_annotations_and_colorbar(res):
    ax = plot.heatmap(res, x="temperature", y="max_tokens")
    (image,) = ax.images
    assert image.get_array().shape == (2, 2)
    table = plot.heatmap_table(res, x="temperature", y="max_tokens")
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.3g}" for v in table.to_numpy().ravel())
    assert _tick_texts(ax) == ["0.2", "0.8"] and _tick_texts(ax, "y") == ["64", "256"]
    colorbar_axes = [a for a in ax.figure.axes if a is not ax]
    assert colorbar_axes[0].get_ylabel() == "mean latency (s)"
    assert not plot.heatmap(res, x="temperature", y="max_tokens", annot=False).texts


def test_heatmap_leaves_empty_pairs_blank(res):
    sparse = res[~((res.temperature == 0.8) & (res.max_tokens == 256))]
    ax = plot.heatmap(sparse, x="temperature", y="max_tokens")
    assert ax.images[0].get_array().mask.sum() == 1
    assert len(ax.texts) == 3


def test_timeline_spans_order_split_and_exclusions():
    data = pd.DataFrame({
        "submitted_at": [110.0, 100.0, 105.0, 101.0, np.nan],
        "completed_at": [112.0, 104.0, 106.0, 103.0, np.nan],
        "queue_s": [0.5, 1.0, np.nan, 0.0, np.nan],
        "predict_s": [1.0, 2.5, 9.0, 1.0, np.nan],
        "cached": [False, False, False, True, False],
        "status": ["succeeded", "failed", "succeeded", "succeeded", "skipped_budget"],
    }, index=["a", "b", "c", "d", "e"])
    spans = plot.timeline_spans(data)
    assert spans["row"].tolist() == ["b", "c", "a"]  # cached d and unsubmitted e left out
    assert spans["start"].tolist() == [0.0, 5.0, 10.0]
    assert spans["queue"].tolist() == [1.0, 0.0, 0.5]
    assert spans["predict"].tolist() == [2.5, 1.0, 1.0]  # c's 9 s clipped to its 1 s wall time
    assert (spans["queue"] + spans["predict"] + spans["other"]).tolist() == [4.0, 1.0, 2.0]
    assert spans["end"].tolist() == [4.0, 6.0, 12.0]
    assert spans["status"].tolist() == ["failed", "succeeded", "succeeded"]


def test_peak_in_flight_counts_overlaps():
    spans = pd.DataFrame({"start": [0.0, 1.0, 2.0, 5.0], "end": [3.0, 4.0, 5.0, 6.0]})
    assert plot.peak_in_flight(spans) == 3  # at t=2..3 three overlap; 5.0 hand-over counts once
    assert plot.peak_in_flight(spans.iloc[:0]) == 0


def test_timeline_draws_three_spans_per_prediction(res):
    res.loc[3, "status"] = "failed"
    res.loc[[4, 6], "cached"] = True
    ax = plot.timeline(res)
    shown = len(res) - 2
    assert len(ax.patches) == 3 * shown
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:3] == ["queue (created → started)", "predict", "client: network, polling, files"]
    assert "did not succeed" in labels
    failed_markers = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sum(len(c.get_offsets()) for c in failed_markers) == 1
    spans = plot.timeline_spans(res)
    assert f"{shown} predictions" in ax.get_title()
    assert f"peak {plot.peak_in_flight(spans)} in flight" in ax.get_title()
    assert "2 rows cached or not submitted" in ax.get_title()
    assert ax.get_xlabel() == "seconds since first submit"


def test_timeline_needs_submit_and_completion_times(res):
    with pytest.raises(ConfigurationError, match="submitted_at"):
        plot.timeline(res.drop(columns="submitted_at"))


@pytest.mark.parametrize(
    "draw",
    [
        lambda d: plot.latency(d, x="engine"),
        lambda d: plot.cost(d, y="price"),
        lambda d: plot.cost_vs_latency(d, hue="nope"),
        lambda d: plot.heatmap(d, x="temperature", y="top_p"),
    ],
)
def test_missing_columns_are_named(res, draw):
    with pytest.raises(ConfigurationError, match="is not in the frame"):
        draw(res)


def test_small_costs_on_axes_and_annotations_are_plain_decimals(res):
    res = res.assign(cost_usd=res["cost_usd"] * 0.05)  # ~$0.00005 per row
    ax = plot.cost_vs_latency(res)
    ax.figure.canvas.draw()
    ticks = [t for t in _tick_texts(ax, "y") if t]
    assert ticks and all("e" not in t and t.startswith(("$", "-$")) for t in ticks)
    bars = plot.cost(res)
    bars.figure.canvas.draw()
    notes = [t.get_text() for t in bars.texts if t.get_text().startswith("$")]
    assert notes and all("e-0" not in t for t in notes)
    assert plotlabels.usd(7.73e-05) == "$0.000077"


LONG_MODELS = [
    "black-forest-labs/flux-1.1-pro-ultra-raw-finetune",
    "stability-ai/stable-diffusion-3.5-large-turbo-experimental",
    "bytedance/sdxl-lightning-4step:" + "5599ed30" * 8,
    "acme/tiny",
]


def test_cost_vs_latency_with_long_names_keeps_most_of_the_width():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame([{"model": m, "latency_s": rng.uniform(1, 9),
                           "cost_usd": rng.uniform(0.001, 0.02)} for m in LONG_MODELS for _ in range(5)])
    ax = plot.cost_vs_latency(frame)
    figure = ax.figure
    figure.canvas.draw()
    assert ax.get_position().width > 0.75  # was ~0.43 with the legend at the right
    renderer = figure.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    xlabel = ax.xaxis.label.get_window_extent(renderer)
    assert legend.y1 <= xlabel.y0 + 1  # below the x label, not over it
    assert legend.y0 >= 0 and legend.x0 >= 0 and legend.x1 <= figure.bbox.width  # inside the figure
    shown = [t.get_text() for t in ax.get_legend().get_texts()]
    assert shown == [plotlabels.short_label(m, 40) for m in LONG_MODELS]


def test_cost_vs_latency_short_names_keep_the_legend_at_the_right():
    frame = pd.DataFrame({"model": ["a/x", "b/y"] * 3, "latency_s": [1, 2, 3, 4, 5, 6],
                          "cost_usd": [0.001] * 6})
    ax = plot.cost_vs_latency(frame)
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    assert ax.get_legend().get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1


def test_usd_ticks_all_carry_the_decimals_the_step_needs():
    frame = pd.DataFrame({"model": ["m"] * 3, "latency_s": [1.0, 2.0, 3.0],
                          "cost_usd": [0.00001, 0.0001, 0.0002]})
    ax = plot.cost_vs_latency(frame, hue=None)
    ax.set_ylim(0, 0.0002)
    ax.set_yticks([0, 0.000025, 0.00005, 0.000075, 0.0001, 0.000125])
    ax.figure.canvas.draw()
    assert _tick_texts(ax, "y") == ["$0", "$0.000025", "$0.000050", "$0.000075", "$0.000100",
                                    "$0.000125"]
    ax.set_ylim(0, 300)
    ax.set_yticks([0, 100, 200, 300])
    ax.figure.canvas.draw()
    assert _tick_texts(ax, "y") == ["$0", "$100", "$200", "$300"]
    ax.set_yticks([0, 0.5, 1.0])
    ax.figure.canvas.draw()
    assert _tick_texts(ax, "y") == ["$0", "$0.50", "$1.00"]


def test_timeline_labels_at_most_about_twenty_rows():
    n = 45
    data = pd.DataFrame({
        "submitted_at": np.arange(n, dtype=float) * 0.1,
        "completed_at": np.arange(n, dtype=float) * 0.1 + 1.0,
        "status": "succeeded",
    })
    ax = plot.timeline(data)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert 15 <= len(labels) <= 20
    assert labels[0] == "0" and labels[1] == "3"  # every third row, starting at the first


# --- shared colours, log axes, limits, rates (plotscale) ------------------------------------------


def _rgba(artist_colour):
    return tuple(np.round(np.asarray(artist_colour, dtype=float).ravel()[:3], 4))


def test_one_model_colour_across_every_plot_of_a_frame(res):
    from replibatch._view.plotscale import palette

    colours = {model: _rgba(c) for model, c in palette(res, "model").items()}
    assert len(set(colours.values())) == len(MODELS)
    # A cost plot leaving out the first model (no known cost) must not shift the others' colours.
    no_cost = res.assign(cost_usd=np.where(res["model"] == MODELS[0], np.nan, res["cost_usd"]))
    bars = plot.cost(no_cost).patches
    assert [_rgba(b.get_edgecolor()) for b in bars] == [colours[m] for m in MODELS[1:]]
    scatter = plot.cost_vs_latency(res).collections
    assert [_rgba(c.get_facecolor()[0]) for c in scatter] == [colours[m] for m in MODELS]
    plt.close("all")
    latency = plot.latency(res)  # no hue: boxes and points take their model's colour too
    points = [c for c in latency.collections if isinstance(c, PathCollection)]
    assert [_rgba(c.get_facecolor()[0]) for c in points] == [colours[m] for m in MODELS]


def test_log_axis_when_costs_span_decades(res):
    cheap = res.assign(cost_usd=np.where(res["model"] == MODELS[0], 1e-6, 0.5))
    assert plot.cost_vs_latency(cheap).get_yscale() == "log"
    assert plot.cost(cheap).get_yscale() == "log"
    assert plot.cost_vs_latency(cheap, logy=False).get_yscale() == "linear"
    assert plot.cost_vs_latency(res).get_yscale() == "linear"  # within two decades


def test_every_point_lies_inside_the_axes_limits(res):
    from replibatch._view.plotscale import padded_limits

    one = res.head(1).assign(latency_s=2.0, cost_usd=0.004)
    for frame in (res, one, res.assign(cost_usd=0.0)):
        ax = plot.cost_vs_latency(frame)
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        for collection in ax.collections:
            for x, y in collection.get_offsets():
                # Strictly inside, with room: a point on the frame's edge is half cut off.
                assert x0 < x < x1 and y0 < y < y1
                assert min(x - x0, x1 - x) > 0.02 * (x1 - x0)
                assert min(y - y0, y1 - y) > 0.02 * (y1 - y0)
        plt.close("all")
    assert padded_limits([3.0, 3.0]) == (0.0, pytest.approx(3.27))
    low, high = padded_limits([1e-6, 1e-2], log=True)
    assert low < 1e-6 and high > 1e-2


def test_timeline_states_the_sustained_rate_and_the_account_limit(res):
    from replibatch._view.plotscale import submit_rates

    # A first burst of 10 at t=0, then one submit every 0.1 s: 600/min sustained. Extrapolating
    # the whole run would claim more (the burst).
    starts = [0.0] * 10 + [0.1 * i for i in range(1, 91)]
    rates = submit_rates(starts)
    assert rates.sustained_per_minute == pytest.approx(600.0)
    assert rates.overall_per_minute > 650
    frame = res.head(20).copy()
    frame["submitted_at"] = 1_700_000_000.0 + np.array([0.0] * 4 + [0.1 * i for i in range(1, 17)])
    frame["completed_at"] = frame["submitted_at"] + 1.0
    frame.attrs["replibatch"] = {"create_rate_per_minute": 600.0}
    title = plot.timeline(frame).get_title()
    assert "submitted 600/min sustained" in title and "account limit 600/min" in title
    assert "submits/min" not in title
