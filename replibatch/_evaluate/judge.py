"""`judge` / `ajudge`: a Replicate model grades each output, through the same engine as `run`.

The rubric is a `str.format` template filled from each row: ``{prompt}``, ``{output}`` (the output
as text) and any other column by name (write literal braces as ``{{`` and ``}}``). Image outputs are
passed to the judge as a file input (``image`` by default) so a vision model can look at them.

Judge predictions go through `replibatch.run` itself, so they are cached (a second call with the
same rubric, outputs and judge version creates nothing), rate-limited, budgeted with
``max_cost`` and costed. The judged frame gains, for ``name="judge"``:

| column | meaning |
|---|---|
| ``score_judge`` | the grade read from the judge's reply (NaN when there is none) |
| ``judge_reason`` | the reason the judge gave (the reply's text after ``Reason:``, or the reply) |
| ``judge_status`` | the judge prediction's status (None for rows that were not judged) |
| ``judge_error`` | why there is no grade: the prediction's error, or an unreadable reply |
| ``judge_cost_usd``, ``judge_latency_s`` | the judge prediction's own cost and latency |
| ``judge_cached`` | True when the judgement came from the cache |

Only rows that succeeded are judged; identical rubric texts are judged once.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from replibatch._evaluate.score import SCORE_PREFIX
from replibatch._store.outfiles import image_paths
from replibatch.errors import ConfigurationError
from replibatch.scorers import text_of

__all__ = ["DEFAULT_RUBRIC", "Grade", "ajudge", "judge", "parse_grade"]

DEFAULT_RUBRIC = (
    "You are grading a model's answer. Rate it from 1 (useless) to 5 (excellent) for how well "
    "it answers the prompt: relevant, clear, not repetitive.\n"
    "Reply exactly in the form:\nScore: <1-5>\nReason: <one sentence>\n\n"
    "Prompt: {prompt}\n\nOutput: {output}\n"
)


@dataclass(frozen=True)
class Grade:
    """A judge's reply read as a `score` (None when it names none) and a `reason`."""

    score: float | None
    reason: str | None


_SCORE_RE = re.compile(
    r"\b(?:score|grade|rating)\b\**\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*\d+)?", re.IGNORECASE
)
_REASON_RE = re.compile(r"\b(?:reason|reasoning|explanation|rationale)\b\s*[:=]\s*(.+)",
                        re.IGNORECASE | re.DOTALL)
_LEADING_NUMBER_RE = re.compile(r"^\s*\**\s*(-?\d+(?:\.\d+)?)\b")
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)


def _from_json(text: str) -> Grade | None:
    fenced = _FENCE_RE.search(text)
    candidate = fenced.group(1) if fenced else text.strip()
    if not candidate.startswith("{"):
        return None
    try:
        value = json.loads(candidate)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    score = next((value[k] for k in ("score", "grade", "rating") if k in value), None)
    reason = next((value[k] for k in ("reason", "reasoning", "explanation", "rationale")
                   if k in value), None)
    number = None
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        number = float(score)
    elif isinstance(score, str):
        try:
            number = float(score.strip())
        except ValueError:
            number = None
    return Grade(number, None if reason is None else " ".join(str(reason).split()))


def parse_grade(reply: Any) -> Grade:
    """Read a score and a reason from a judge's reply (never raises).

    Understood, in order: a JSON object (also inside a ``` fence) with ``score``/``grade``/
    ``rating`` and ``reason``/``explanation``; ``Score: 4`` (or ``Grade = 4/5``) anywhere with an
    optional ``Reason: ...``; a reply that starts with a number. Otherwise the score is None.
    """
    text = text_of(reply).strip()
    parsed = _from_json(text)
    if parsed is not None and parsed.score is not None:
        return parsed
    match = _SCORE_RE.search(text) or _LEADING_NUMBER_RE.search(text)
    reason_match = _REASON_RE.search(text)
    reason = " ".join(reason_match.group(1).split()) if reason_match else " ".join(text.split())
    score = float(match.group(1)) if match else None
    if score is not None and not math.isfinite(score):
        score = None
    return Grade(score, reason or None)


def _placeholders(template: str) -> set[str]:
    """Field names a format template uses. Raises ConfigurationError when it does not parse."""
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as exc:
        raise ConfigurationError(f"the judge prompt is not a valid template: {exc} "
                                 "(write literal braces as {{ and }})") from None
    names = set()
    for field in fields:
        if not field or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field):
            raise ConfigurationError(
                f"the judge prompt has a placeholder {{{field}}}: use column names such as "
                "{prompt} and {output} (write literal braces as {{ and }})"
            )
        names.add(field)
    return names


@dataclass
class _JudgeJobs:
    """The judge's input frame and which rows of the judged frame each of its rows grades."""

    frame: pd.DataFrame
    positions: list[int]
    input_names: list[str]


def _build_jobs(res: pd.DataFrame, rubric: str, image_input: str | None, prompt_input: str,
                extra: Mapping[str, Any]) -> _JudgeJobs:
    if not isinstance(res, pd.DataFrame):
        raise ConfigurationError(f"judge() needs a DataFrame, got {type(res).__name__}")
    if "output" not in res.columns:
        raise ConfigurationError("judge() needs a result frame with an 'output' column")
    names = _placeholders(rubric)
    missing = sorted(name for name in names if name not in res.columns)
    if missing:
        raise ConfigurationError(
            f"the judge prompt uses {{{missing[0]}}}, which is not a column of the frame "
            f"(columns: {', '.join(map(str, res.columns))})"
        )
    if "status" in res.columns:
        ok = (res["status"] == "succeeded").to_numpy(dtype=bool, na_value=False)
    else:
        ok = np.ones(len(res), dtype=bool)
    columns = {name: res[name].tolist() for name in names}
    texts, images, positions = [], [], []
    for i in np.flatnonzero(ok):
        values = {name: text_of(columns[name][i]) if name == "output" else columns[name][i]
                  for name in names}
        texts.append(rubric.format_map(values))
        found = image_paths(res["output"].iat[int(i)]) if image_input else []
        images.append(found[0] if found else None)
        positions.append(int(i))
    frame = pd.DataFrame({prompt_input: pd.Series(texts, dtype=object)})
    input_names = [prompt_input]
    if image_input and any(image is not None for image in images):
        frame[image_input] = pd.Series(images, dtype=object)
        input_names.append(image_input)
    for key, value in extra.items():
        frame[key] = [value] * len(frame)
        input_names.append(key)
    return _JudgeJobs(frame, positions, input_names)


def _merge(res: pd.DataFrame, jobs: _JudgeJobs, graded: pd.DataFrame | None, name: str) -> pd.DataFrame:
    n = len(res)
    score = np.full(n, np.nan)
    latency = np.full(n, np.nan)
    cost = np.full(n, np.nan)
    cached = np.zeros(n, dtype=bool)
    reason: list[Any] = [None] * n
    status: list[Any] = [None] * n
    error: list[Any] = [None] * n
    if graded is not None:
        for j, i in enumerate(jobs.positions):
            row = graded.iloc[j]
            status[i] = row["status"]
            latency[i] = row["latency_s"]
            cost[i] = row["cost_usd"]
            cached[i] = bool(row["cached"])
            if row["status"] != "succeeded":
                error[i] = row["error"]
                continue
            grade = parse_grade(row["output"])
            reason[i] = grade.reason
            if grade.score is None:
                error[i] = f"no score in the judge's reply: {text_of(row['output'])[:200]!r}"
            else:
                score[i] = grade.score
    out = res.copy()
    out[f"{SCORE_PREFIX}{name}"] = score
    for suffix, values in (("reason", reason), ("status", status), ("error", error)):
        out[f"{name}_{suffix}"] = pd.Series(values, index=res.index, dtype=object)
    out[f"{name}_cost_usd"] = cost
    out[f"{name}_latency_s"] = latency
    out[f"{name}_cached"] = cached
    if graded is not None:
        out.attrs[f"replibatch_{name}"] = graded.attrs.get("replibatch")
    return out


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigurationError(f"name must be an identifier such as 'judge', got {name!r}")


def judge(
    res: pd.DataFrame,
    model: str,
    prompt: str = DEFAULT_RUBRIC,
    name: str = "judge",
    *,
    image_input: str | None = "image",
    prompt_input: str = "prompt",
    judge_inputs: Mapping[str, Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """A copy of `res` graded by the Replicate model `model` (see the module docstring).

    `prompt`: the rubric template. `image_input`: the judge's file input that receives a row's
    first image output (None: never send images). `prompt_input`: the judge's text input.
    `judge_inputs`: constant inputs for every judge prediction (e.g. ``{"temperature": 0}``).
    `options` go to `replibatch.run` (``max_cost``, ``cache``, ``concurrency``, ``base_url``,
    ``api_token``, ``progress``...). The judge run's summary is in ``attrs["replibatch_<name>"]``.

    Raises ConfigurationError (a ValueError) before anything is sent when the rubric uses a
    column the frame lacks or does not parse, `name` is not an identifier, or `run` refuses the
    call; AuthenticationError when the token is refused.
    """
    from replibatch._engine.runner import run

    _check_name(name)
    jobs = _build_jobs(res, prompt, image_input, prompt_input, judge_inputs or {})
    graded = (run(jobs.frame, model=model, inputs=jobs.input_names, **options)
              if len(jobs.frame) else None)
    return _merge(res, jobs, graded, name)


async def ajudge(
    res: pd.DataFrame,
    model: str,
    prompt: str = DEFAULT_RUBRIC,
    name: str = "judge",
    *,
    image_input: str | None = "image",
    prompt_input: str = "prompt",
    judge_inputs: Mapping[str, Any] | None = None,
    **options: Any,
) -> pd.DataFrame:
    """`judge` for async code (runs through `replibatch.arun`); same arguments and errors."""
    from replibatch._engine.runner import arun

    _check_name(name)
    jobs = _build_jobs(res, prompt, image_input, prompt_input, judge_inputs or {})
    graded = (await arun(jobs.frame, model=model, inputs=jobs.input_names, **options)
              if len(jobs.frame) else None)
    return _merge(res, jobs, graded, name)
