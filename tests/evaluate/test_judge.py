"""rb.judge: a simulator judge model grades outputs through the engine (cached, costed)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

import replibatch as rb
from replibatch._evaluate.judge import DEFAULT_RUBRIC, parse_grade
from replibatch.sim import SimServer
from replibatch.sim.judges import grade_text, split_rubric

RUBRIC = "Grade this.\nPrompt: {prompt}\nOutput: {output}\nTopic: {topic}"


def _results(sim: SimServer) -> pd.DataFrame:
    prompts = pd.DataFrame({"prompt": ["Write about tea and cups.", "Write about river stones."],
                            "topic": ["tea", "river"]})
    res = rb.run(rb.grid(prompts, temperature=[0.1, 1.0], seed=[3]), model="replibatch/tiny-llama",
                 inputs=["prompt", "temperature", "seed"],
                 base_url=sim.url, api_token="r8_test", progress=False)
    failed = res.iloc[[0]].copy()
    failed["status"], failed["output"], failed["error"] = "failed", None, "boom"
    return pd.concat([res, failed], ignore_index=True)


def test_judge_grades_each_succeeded_row_and_a_second_call_creates_nothing(sim: SimServer) -> None:
    res = _results(sim)
    before = sim.stats.creates
    first = rb.judge(res, "replibatch/judge", RUBRIC, base_url=sim.url, api_token="r8_test",
                     progress=False)
    assert sim.stats.creates - before == 4  # the failed row is not judged
    assert first.index.equals(res.index) and list(first.columns[: len(res.columns)]) == list(res.columns)
    for i in range(4):
        # The grade is the demo judge's deterministic grade of exactly that row's output.
        text = RUBRIC.format(prompt=res.at[i, "prompt"], output=res.at[i, "output"], topic=res.at[i, "topic"])
        expected, reason = grade_text(*split_rubric(text))
        assert first.at[i, "score_judge"] == expected
        assert first.at[i, "judge_reason"] == reason + "."
        assert first.at[i, "judge_status"] == "succeeded"
        assert first.at[i, "judge_cost_usd"] > 0 and first.at[i, "judge_latency_s"] > 0
    assert not first["judge_cached"].any()
    # Low temperature repeats itself; the judge sees it.
    assert first.loc[[1, 3], "score_judge"].mean() > first.loc[[0, 2], "score_judge"].mean()
    assert math.isnan(first.at[4, "score_judge"]) and first.at[4, "judge_status"] is None

    creates = sim.stats.creates
    second = rb.judge(res, "replibatch/judge", RUBRIC, base_url=sim.url, api_token="r8_test",
                      progress=False)
    assert sim.stats.creates == creates  # served entirely from the cache
    assert second["judge_cached"].iloc[:4].all()
    assert second["score_judge"].iloc[:4].tolist() == first["score_judge"].iloc[:4].tolist()
    assert second.attrs["replibatch_judge"]["cached"] == 4


def test_judge_respects_max_cost(sim: SimServer) -> None:
    res = _results(sim)
    out = rb.judge(res, "replibatch/judge", base_url=sim.url, api_token="r8_test", progress=False,
                   max_cost=1e-12, concurrency=1, name="strict")
    assert "skipped_budget" in set(out["strict_status"].dropna())
    skipped = out["strict_status"] == "skipped_budget"
    assert out.loc[skipped, "score_strict"].isna().all()


def test_vision_judge_gets_image_outputs_and_grades_more_steps_higher(sim: SimServer) -> None:
    frame = pd.DataFrame({"prompt": ["a red circle on a blue sky"] * 2, "num_inference_steps": [2, 30],
                          "width": [128, 128], "height": [128, 128], "seed": [1, 1]})
    images = rb.run(frame, model="replibatch/pixel-diffusion", base_url=sim.url,
                    api_token="r8_test", progress=False)
    out = rb.judge(images, "replibatch/vision-judge", "Rate the image for: {prompt}",
                   base_url=sim.url, api_token="r8_test", progress=False)
    assert out["judge_reason"].str.contains("colourfulness").all()  # it read the image
    assert out.at[1, "score_judge"] > out.at[0, "score_judge"]


def test_a_text_output_naming_a_local_image_is_never_uploaded(sim: SimServer, tmp_path) -> None:
    # A model can answer with any text, such as the path of a private photo on this machine: the
    # judge sends only files of our own store (OutputFile), never what plain text names.
    private = tmp_path / "private.png"
    images = rb.run(pd.DataFrame({"prompt": ["a dot"], "width": [64], "height": [64], "seed": [1]}),
                    model="replibatch/pixel-diffusion", base_url=sim.url, api_token="r8_test",
                    progress=False)
    stored_file = images.at[0, "output"]
    stored_file = stored_file[0] if isinstance(stored_file, list) else stored_file
    private.write_bytes(stored_file.path.read_bytes())  # a real PNG
    res = pd.DataFrame({"prompt": ["p"], "output": [str(private)], "status": ["succeeded"]})
    uploads = sim.stats.requests.get("POST /v1/files", 0)
    out = rb.judge(res, "replibatch/vision-judge", "Rate: {output}", base_url=sim.url,
                   api_token="r8_test", progress=False)
    assert sim.stats.requests.get("POST /v1/files", 0) == uploads
    assert "colourfulness" not in str(out.at[0, "judge_reason"])  # it saw no image
    # The stored file itself is what the judge may send.
    stored = rb.judge(images, "replibatch/vision-judge", "Rate: {prompt}", base_url=sim.url,
                      api_token="r8_test", progress=False)
    assert "colourfulness" in str(stored.at[0, "judge_reason"])


def test_bad_rubrics_raise_before_anything_is_sent(sim: SimServer) -> None:
    res = pd.DataFrame({"prompt": ["p"], "output": ["o"], "status": ["succeeded"]})
    creates = sim.stats.creates
    with pytest.raises(ValueError, match="nope"):
        rb.judge(res, "replibatch/judge", "{nope}", base_url=sim.url, api_token="r8_test")
    with pytest.raises(ValueError, match="template"):
        rb.judge(res, "replibatch/judge", "{output", base_url=sim.url, api_token="r8_test")
    with pytest.raises(ValueError, match="identifier"):
        rb.judge(res, "replibatch/judge", name="my judge", base_url=sim.url, api_token="r8_test")
    assert sim.stats.creates == creates


@pytest.mark.parametrize(
    ("reply", "score", "reason"),
    [
        ("Score: 4\nReason: clear and short.", 4.0, "clear and short."),
        ('```json\n{"score": 3.5, "reason": "ok"}\n```', 3.5, "ok"),
        ("**Grade**: 2/5 — rambling", 2.0, "**Grade**: 2/5 — rambling"),
        ("5. Excellent answer", 5.0, "5. Excellent answer"),
        (["Score", ": 1"], 1.0, "Score: 1"),
        ("I cannot grade this.", None, "I cannot grade this."),
    ],
)
def test_parse_grade(reply: object, score: float | None, reason: str) -> None:
    grade = parse_grade(reply)
    assert grade.score == score and grade.reason == reason


def test_ajudge_runs_on_asyncio_through_arun(sim: SimServer) -> None:
    import anyio

    res = pd.DataFrame({"prompt": ["Write about tea."], "output": ["Tea is warm and tea is green."],
                        "status": ["succeeded"]})

    async def main() -> pd.DataFrame:
        return await rb.ajudge(res, "replibatch/judge", base_url=sim.url, api_token="r8_test",
                               progress=False)

    out = anyio.run(main, backend="asyncio")
    rubric = DEFAULT_RUBRIC.format(prompt="Write about tea.", output="Tea is warm and tea is green.")
    expected, _ = grade_text(*split_rubric(rubric))
    assert out.at[0, "score_judge"] == expected and out.at[0, "judge_status"] == "succeeded"
