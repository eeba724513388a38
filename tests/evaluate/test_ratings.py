"""rb.rate / rb.ratings: ratings persist by cache key, across processes, and in the browser."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import replibatch as rb
from replibatch.sim import SimServer

ROOT = Path(__file__).resolve().parents[2]


def _results(sim: SimServer, **options: object) -> pd.DataFrame:
    prompts = pd.DataFrame({"prompt": ["Write about tea.", "Write about rivers."]})
    sweep = rb.grid(prompts, model=["replibatch/tiny-llama", "replibatch/official-chat"], seed=[1])
    res = rb.run(sweep, base_url=sim.url, api_token="r8_test", progress=False, **options)
    res.index = [f"r{i}" for i in range(len(res))]
    return res


def test_ratings_are_nan_until_rated_and_kept_per_kind(sim: SimServer) -> None:
    res = _results(sim)
    assert res["cache_key"].str.startswith("rb1:sha256:").all()
    empty = rb.ratings(res)
    assert list(empty.columns) == ["rating_thumbs", "rating_stars", "rating_best"]
    assert empty.index.equals(res.index) and empty.isna().all().all()

    rb.rate(res, "r0", True)
    rb.rate(res, ["r1", "r2"], 4)
    rb.rate(res, res["model"] == "replibatch/official-chat", "down")
    got = rb.ratings(res)
    assert got["rating_thumbs"].tolist()[:2] == [1.0, 0.0] and np.isnan(got.at["r2", "rating_thumbs"])
    assert got.at["r3", "rating_thumbs"] == 0.0
    assert got["rating_stars"].tolist()[1:3] == [4.0, 4.0] and np.isnan(got.at["r0", "rating_stars"])
    assert rb.ratings(res, "stars").name == "rating_stars"

    rb.rate(res, "r1", None, kind="stars")
    assert np.isnan(rb.ratings(res, "stars")["r1"]) and rb.ratings(res, "thumbs")["r1"] == 0.0
    rb.rate(res, "r1", None)
    assert rb.ratings(res).loc["r1"].isna().all()


def test_best_of_a_prompt_moves_between_the_prompts_rows(sim: SimServer) -> None:
    res = _results(sim)  # r0, r1: tea (two models); r2, r3: rivers
    rb.rate(res, "r0", "best")
    assert rb.ratings(res, "best").tolist()[:2] == [1.0, 0.0]
    assert rb.ratings(res, "best")[["r2", "r3"]].isna().all()
    rb.rate(res, "r1", "best")
    assert rb.ratings(res, "best").tolist()[:2] == [0.0, 1.0]


def test_a_rerun_finds_the_ratings_of_its_rows(sim: SimServer) -> None:
    res = _results(sim)
    rb.rate(res, "r2", 5)
    again = _results(sim)  # served from the cache: same keys
    assert again["cached"].all()
    assert again.loc["r2", "cache_key"] == res.loc["r2", "cache_key"]
    assert rb.ratings(again, "stars")["r2"] == 5.0


def test_ratings_written_in_one_process_are_read_in_another(sim: SimServer, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    res = _results(sim, cache=cache)
    frame = tmp_path / "res.pkl"
    res[["prompt", "model", "cache_key"]].to_pickle(frame)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REPLIBATCH_CACHE_DIR": str(cache)}

    def python(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    python(f"""
        import pandas as pd, replibatch as rb
        res = pd.read_pickle({str(frame)!r})
        rb.rate(res, "r0", 3)
        rb.rate(res, "r3", "best")
    """)
    assert rb.ratings(res, "stars", cache=cache).tolist()[0] == 3.0  # this process
    out = python(f"""
        import pandas as pd, replibatch as rb
        res = pd.read_pickle({str(frame)!r})
        print(rb.ratings(res).to_json())
    """)
    read = pd.read_json(__import__("io").StringIO(out))
    assert read.at["r0", "rating_stars"] == 3.0 and read.at["r3", "rating_best"] == 1.0
    assert read.at["r2", "rating_best"] == 0.0 and np.isnan(read.at["r1", "rating_stars"])


def test_invalid_ratings_raise_value_error(sim: SimServer) -> None:
    res = _results(sim)
    for value in (0, 6, 2.5, "great", [1]):
        with pytest.raises(ValueError, match="not a rating"):
            rb.rate(res, "r0", value)
    with pytest.raises(ValueError, match="not in the frame"):
        rb.rate(res, "nope", 3)
    with pytest.raises(ValueError, match="thumbs rating, not stars"):
        rb.rate(res, "r0", True, kind="stars")
    with pytest.raises(ValueError, match="cache_key"):
        rb.rate(res.drop(columns="cache_key"), "r0", 3)
    with pytest.raises(ValueError, match="cache=False"):
        rb.ratings(res, cache=False)


def test_browser_rating_controls_write_and_show_the_stored_ratings(sim: SimServer) -> None:
    res = _results(sim)
    browser = rb.browse(res)._replibatch_browser
    controls = browser.rating
    browser.rows.value = 1
    assert controls.position == 1 and controls.stars.value == 0
    controls.stars.value = 4
    controls.thumbs.value = -1
    controls.best.value = True
    assert rb.ratings(res).loc["r1"].tolist() == [0.0, 4.0, 1.0]
    assert rb.ratings(res, "best")["r0"] == 0.0
    browser.rows.value = 0
    assert (controls.stars.value, controls.thumbs.value, controls.best.value) == (0, 0, False)
    browser.rows.value = 1  # shown again from the store
    assert (controls.stars.value, controls.thumbs.value, controls.best.value) == (4, -1, True)
    controls.stars.value = 0
    assert np.isnan(rb.ratings(res, "stars")["r1"])


def test_browser_shows_scores_apart_from_the_parameters(sim: SimServer) -> None:
    res = rb.score(_results(sim), words=rb.scorers.length("words"))
    browser = rb.browse(res)._replibatch_browser
    assert "score_words" not in browser.filters and "score_words" not in browser.parameters
    assert browser.scores == ["score_words"]
    assert "<b>scores</b>" in browser.row_html(0) and "score_words" in browser.row_html(0)
