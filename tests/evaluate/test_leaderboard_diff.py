"""rb.leaderboard, rb.plot.score_vs_cost, rb.diff and compare(only_different=True) on simulator runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import replibatch as rb
from replibatch._evaluate.diff import dhash, image_similarity
from replibatch._evaluate.leaderboard import bootstrap_interval, win_rates
from replibatch._view.plot_eval import pareto_front
from replibatch.sim import SimServer

PROMPTS = ["Write about tea.", "Write about rivers.", "Describe a city at night.", "A poem on stone."]


def _bakeoff(sim: SimServer) -> pd.DataFrame:
    sweep = rb.grid(pd.DataFrame({"prompt": PROMPTS}),
                    model=["replibatch/tiny-llama", "replibatch/official-chat"],
                    temperature=[0.1, 1.0], seed=[1])
    res = rb.run(sweep, base_url=sim.url, api_token="r8_test", progress=False)
    return rb.score(res, words=rb.scorers.length("words"),
                    hot=lambda row: float(row["temperature"] > 0.5))


def test_leaderboard_counts_scores_win_rates_cost_and_latency(sim: SimServer) -> None:
    res = _bakeoff(sim)
    res.loc[0, "status"] = "failed"  # one tiny-llama row failed
    board = rb.leaderboard(res, by="model", score="words")
    f = board.frame
    assert list(f.index) == sorted(f.index, key=lambda m: -f.loc[m, "score"])
    tiny = f.loc["replibatch/tiny-llama"]
    assert (tiny["rows"], tiny["succeeded"], tiny["failures"], tiny["scored"]) == (8, 7, 1, 7)
    mine = res[(res.model == "replibatch/tiny-llama") & (res.status == "succeeded")]
    assert tiny["score"] == pytest.approx(mine["score_words"].mean())
    assert tiny["score_low"] <= tiny["score"] <= tiny["score_high"]
    assert tiny["p50_latency_s"] == pytest.approx(mine["latency_s"].median())
    tiny_costs = res.loc[res.model == "replibatch/tiny-llama", "cost_usd"]
    assert tiny["cost_per_row"] == pytest.approx(tiny_costs.mean())
    # Two models: each win rate is the other's complement.
    assert f["win_rate"].sum() == pytest.approx(1.0)
    by_two = rb.leaderboard(res, by=["model", "temperature"], score="hot", per=None)
    assert by_two.frame["score"].tolist()[:2] == [1.0, 1.0] and math.isnan(by_two.frame["win_rate"].iloc[0])
    page = board._repr_html_()
    assert "replibatch/tiny-llama" in page and "win rate" in page and "95% CI" in page


def test_leaderboard_ranks_by_human_ratings(sim: SimServer) -> None:
    res = _bakeoff(sim)
    chat = res.index[(res.model == "replibatch/official-chat") & (res.temperature == 0.1)]
    for label in chat:
        rb.rate(res, label, "best", group=["prompt", "temperature"])
    f = rb.leaderboard(res, score="best", per=["prompt", "temperature"]).frame
    assert f.index[0] == "replibatch/official-chat"
    # Best on 4 of the 8 prompt settings; the other 4 have no "best" and are not compared.
    assert f.loc["replibatch/official-chat", "win_rate"] == 1.0
    rb.rate(res, res.index[res.model == "replibatch/tiny-llama"][:3], 5)
    stars = rb.leaderboard(res, score="stars").frame
    assert stars.loc["replibatch/tiny-llama", "scored"] == 3


def test_leaderboard_refuses_unknown_columns(sim: SimServer) -> None:
    res = _bakeoff(sim)
    with pytest.raises(ValueError, match="nope"):
        rb.leaderboard(res, score="nope")
    with pytest.raises(ValueError, match="not in the frame"):
        rb.leaderboard(res, by="colour")


def test_win_rates_and_bootstrap_are_right_on_hand_made_numbers() -> None:
    keys = [("a",), ("b",), ("c",), ("a",), ("b",)]
    prompts = [("p",), ("p",), ("p",), ("q",), ("q",)]
    rates = win_rates(keys, prompts, np.array([3.0, 2.0, 2.0, 1.0, 1.0]))
    # p: a beats b and c, b ties c; q: a ties b.
    assert rates == {("a",): 2.5 / 3, ("b",): 1.0 / 3, ("c",): 0.5 / 2}
    low, high = bootstrap_interval(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert 1.0 < low < 3.0 < high < 5.0
    assert all(math.isnan(v) for v in bootstrap_interval(np.array([4.0])))  # one value: no interval
    big = np.arange(10_000, dtype=float)
    low, high = bootstrap_interval(big)
    assert low < big.mean() < high and high - low < 200


def test_score_vs_cost_draws_the_pareto_front(sim: SimServer) -> None:
    board = pd.DataFrame({"score": [3.0, 4.0, 2.0, 4.0], "cost_per_row": [1.0, 2.0, 3.0, 5.0],
                          "score_low": [2.5, 3.5, 1.5, 3.0], "score_high": [3.5, 4.5, 2.5, 5.0]},
                         index=["cheap", "good", "bad", "pricey"])
    assert pareto_front(board) == ["cheap", "good"]
    res = _bakeoff(sim)
    ax = rb.plot.score_vs_cost(res, score="words")
    texts = [t.get_text() for t in ax.texts]
    assert sorted(texts) == sorted(["replibatch/tiny-llama", "replibatch/official-chat"])
    assert len(ax.collections) + len(ax.lines) >= 2 and "Pareto" in ax.get_title()
    import matplotlib.pyplot as plt

    plt.close("all")


def _images(sim: SimServer, steps: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame({"prompt": ["a red circle", "a blue square", "green hills"],
                          "num_inference_steps": steps, "width": 128, "height": 128, "seed": 7})
    return rb.run(frame, model="replibatch/pixel-diffusion",
                  inputs=["prompt", "width", "height", "seed", "num_inference_steps"],
                  base_url=sim.url, api_token="r8_test", progress=False)


def test_diff_flags_exactly_the_rows_whose_output_changed(sim: SimServer) -> None:
    prompts = pd.DataFrame({"prompt": PROMPTS * 2, "seed": [1] * 4 + [2] * 4})
    before = rb.run(prompts.assign(temperature=0.7), model="replibatch/tiny-llama",
                    base_url=sim.url, api_token="r8_test", progress=False)
    after = before.copy()
    changed_rows = [1, 6]
    for i in changed_rows:  # a "new version" that answers two prompts differently
        after.at[i, "output"] = after.at[i, "output"].replace(" ", "  ", 1) + " And more."
    after["cost_usd"] = before["cost_usd"] * 2
    words = rb.scorers.length("words")
    before, after = rb.score(before, n=words), rb.score(after, n=words)
    d = rb.diff(before, after)
    assert d.attrs["replibatch_diff"]["on"] == ["prompt", "seed", "temperature"]
    assert d.index[d["changed"]].tolist() == changed_rows
    assert (d.loc[~d["changed"], "similarity"] == 1.0).all()
    assert (d.loc[d["changed"], "similarity"].between(0.8, 0.999)).all()
    assert d.loc[changed_rows, "score_n_delta"].tolist() == [2.0, 2.0]
    assert d["cost_delta"].tolist() == pytest.approx(before["cost_usd"].tolist())
    assert d.attrs["replibatch_diff"]["changed"] == 2

    # The side-by-side view of both, with only what changed.
    both = pd.concat([before.assign(version="old"), after.assign(version="new")], ignore_index=True)
    view = rb.compare(both, index=["prompt", "seed"], columns="version", only_different=True)
    assert sorted(view.frame.index.tolist()) == sorted([(PROMPTS[1], 1), (PROMPTS[2], 2)])
    assert len(rb.compare(both, index=["prompt", "seed"], columns="version").frame) == 8


def test_diff_of_images_uses_a_perceptual_distance(sim: SimServer) -> None:
    before = _images(sim, [30, 30, 30])
    after = _images(sim, [30, 28, 2])
    d = rb.diff(before, after, on="prompt")
    assert d["changed"].tolist() == [False, True, True]
    assert d.at[0, "similarity"] == 1.0
    # Two steps fewer looks nearly the same; 2 steps instead of 30 much less so.
    assert d.at[1, "similarity"] > d.at[2, "similarity"]
    path = before.at[0, "output"][0]
    assert dhash(path).shape == (64,) and image_similarity(path, path) == 1.0


def test_diff_pairs_rows_only_one_side_has_and_refuses_ambiguous_alignment() -> None:
    before = pd.DataFrame({"prompt": ["a", "b"], "output": ["x", "y"], "status": "succeeded"})
    after = pd.DataFrame({"prompt": ["b", "c"], "output": ["y", "z"], "status": ["failed", "succeeded"]})
    d = rb.diff(before, after)
    assert d["pair"].tolist() == ["before only", "both", "after only"]
    assert d["changed"].tolist() == [True, True, True]  # b: same output, but it failed now
    with pytest.raises(ValueError, match="more than one row"):
        rb.diff(pd.concat([before, before]), after)
    with pytest.raises(ValueError, match="'seed' is not in after"):
        rb.diff(before.assign(seed=1), after, on=["prompt", "seed"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab ", max_size=12), min_size=1, max_size=8),
       st.lists(st.booleans(), min_size=8, max_size=8))
def test_diff_changed_is_exactly_where_outputs_differ(outputs: list[str], flips: list[bool]) -> None:
    before = pd.DataFrame({"prompt": [f"p{i}" for i in range(len(outputs))], "output": outputs,
                           "status": "succeeded"})
    after = before.copy()
    after["output"] = [o + "!" if flips[i] else o for i, o in enumerate(outputs)]
    d = rb.diff(before, after)
    assert d["changed"].tolist() == flips[: len(outputs)]
    assert ((d["similarity"] == 1.0) == ~d["changed"]).all()
    assert d["similarity"].between(0, 1).all()
