"""rb.score and rb.scorers: on hand-made frames and on a simulator run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import replibatch as rb
from replibatch import scorers
from replibatch._evaluate.score import Row
from replibatch.sim import serve


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prompt": ["a", "b", "c", "d"],
            "expected": ["The cat sat", "42", "x", "y"],
            "output": ["the cat  sat", '{"answer": 42}', "```json\n[1, 2]\n```", None],
            "status": ["succeeded", "succeeded", "succeeded", "failed"],
        },
        index=[10, 11, 12, 13],
    )


def test_a_scorer_raising_on_one_row_gives_nan_and_the_reason_and_spares_the_others() -> None:
    def picky(row: pd.Series) -> float:
        if row["prompt"] == "b":
            raise RuntimeError("cannot score b")
        return 2.0

    out = rb.score(_frame(), picky=picky, chars=scorers.length("chars"))
    assert out.index.tolist() == [10, 11, 12, 13]
    assert out["score_picky"].tolist()[:1] == [2.0] and math.isnan(out.at[11, "score_picky"])
    assert out.at[12, "score_picky"] == 2.0
    assert out.at[11, "score_picky_error"] == "RuntimeError: cannot score b"
    assert out["score_picky_error"].isna().tolist() == [True, False, True, True]
    # The other scorer ran on every succeeded row, and has no error column.
    assert out["score_chars"].tolist()[:3] == [12.0, 14.0, 18.0]
    assert "score_chars_error" not in out.columns


def test_rows_that_did_not_succeed_are_nan_and_never_passed_to_the_scorer() -> None:
    seen = []
    out = rb.score(_frame(), s=lambda row: seen.append(row["prompt"]) or 1)
    assert seen == ["a", "b", "c"]
    assert math.isnan(out.at[13, "score_s"])


def test_a_row_scorer_gets_every_column_by_key_and_attribute_and_the_label() -> None:
    seen = []

    def look(row: Row) -> float:
        seen.append((row.name, row["prompt"], row.expected, row.get("nope", "-")))
        assert row.to_series().name == row.name and row.to_series()["output"] == row.output
        with pytest.raises(AttributeError, match="nope"):
            row.nope  # noqa: B018
        return 1

    rb.score(_frame(), look=look)
    assert seen == [(10, "a", "The cat sat", "-"), (11, "b", "42", "-"), (12, "c", "x", "-")]


def test_a_callable_of_output_gets_the_output_and_bools_become_numbers() -> None:
    out = rb.score(_frame(), short=lambda output: len(output) < 13)
    assert out["score_short"].tolist()[:3] == [1.0, 0.0, 0.0]
    assert out["score_short"].dtype == np.float64


def test_a_scorer_returning_text_is_an_error_for_that_row() -> None:
    out = rb.score(_frame(), bad=lambda output: "five")
    assert out["score_bad"].isna().all()
    assert "not a number" in out.at[10, "score_bad_error"]


def test_builtin_scorers() -> None:
    out = rb.score(
        _frame(),
        cat=scorers.contains("CAT"),
        cat_case=scorers.contains("CAT", case=True),
        digits=scorers.regex(r"\d", count=True),
        json=scorers.json_valid(),
        answer=scorers.json_valid(required=["answer"]),
        words=scorers.length("words"),
        exact=scorers.equals("expected"),
        close=scorers.similarity("expected"),
        missing=scorers.equals("nope"),
    )
    row = out.loc[10]
    assert (row.score_cat, row.score_cat_case, row.score_exact, row.score_close) == (1, 0, 1, 1)
    assert out["score_digits"].tolist()[:3] == [0, 2, 2]
    assert out["score_json"].tolist()[:3] == [0, 1, 1]
    assert out["score_answer"].tolist()[:3] == [0, 1, 0]
    assert out["score_words"].tolist()[:3] == [3, 2, 4]
    assert 0 < out.at[11, "score_close"] < 1 or out.at[11, "score_close"] == 0
    assert out["score_missing"].isna().all() and "nope" in out.at[10, "score_missing_error"]
    with pytest.raises(ValueError, match="unit"):
        scorers.length("pages")


def test_text_ratio_is_one_for_equal_text_and_lower_for_changed_words() -> None:
    assert scorers.text_ratio("a b c d", "a b c d") == 1.0
    assert scorers.text_ratio("a b c d", "a b x d") == pytest.approx(0.75)
    assert scorers.text_ratio("", "a") == 0.0


def test_invalid_calls_raise_value_error() -> None:
    with pytest.raises(ValueError, match="at least one scorer"):
        rb.score(_frame())
    with pytest.raises(ValueError, match="not a callable"):
        rb.score(_frame(), x=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="DataFrame"):
        rb.score([1, 2])  # type: ignore[arg-type]


def test_scores_a_simulator_run(tmp_path: Path) -> None:
    prompts = pd.DataFrame({"prompt": ["Write about tea.", "Write about rivers."]})
    with serve(time_scale=0.01, seed=0) as server:
        res = rb.run(rb.grid(prompts, temperature=[0.2, 0.9], seed=[1]), model="replibatch/tiny-llama",
                     base_url=server.url, api_token="r8_test", progress=False, cache=tmp_path)
    out = rb.score(res, words=scorers.length("words"), tea=scorers.contains("tea"))
    assert (out["status"] == "succeeded").all()
    words = [len(text.split()) for text in res["output"]]
    assert out["score_words"].tolist() == words
    assert out["score_tea"].tolist() == [float("tea" in t.lower()) for t in res["output"]]


def test_evaluation_columns_are_scores_ratings_and_a_judges_companions() -> None:
    columns = ["prompt", "order_status", "score_judge", "judge_reason", "judge_cost_usd",
               "score_x_error", "rating_stars", "other_reason"]
    assert rb.score.__module__ == "replibatch._evaluate.score"
    from replibatch._evaluate.score import evaluation_columns

    assert evaluation_columns(columns) == ["score_judge", "judge_reason", "judge_cost_usd",
                                           "score_x_error", "rating_stars"]
