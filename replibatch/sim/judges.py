"""The simulator's judge demo models: they grade what they read, deterministically.

``replibatch/judge`` (text, gpu-a40-small) reads a rubric prompt with an answer in it and replies
the way an instructed LLM judge does::

    Score: 4
    Reason: 92 words, little repetition (3% repeated word pairs), uses 4 of 6 prompt words.

The grade (1-5) depends only on the answer's text: repetition lowers it, a reasonable length and
words shared with the question raise it. The answer is the text after the last ``Output:`` /
``Answer:`` / ``Response:`` line of the prompt (the whole prompt when there is none); the
question is the text after ``Prompt:`` / ``Question:`` up to that answer.

``replibatch/vision-judge`` (gpu-l40s) grades an ``image`` by colourfulness and sharpness: the
demo image model's few-step pictures are washed out by grey noise, so more steps grade higher.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Mapping
from typing import Any, Optional

from PIL import Image, ImageFilter, ImageStat

from replibatch.sim.cog import BasePredictor, FileInput, Input

__all__ = ["TextJudge", "VisionJudge", "grade_image", "grade_text"]

_WORD_RE = re.compile(r"[A-Za-z']+")
_ANSWER_RE = re.compile(r"^\s*(?:output|answer|response)\s*:", re.IGNORECASE | re.MULTILINE)
_QUESTION_RE = re.compile(r"^\s*(?:prompt|question|input)\s*:", re.IGNORECASE | re.MULTILINE)
_STOP_WORDS = frozenset(
    ("a", "an", "the", "of", "to", "in", "is", "it", "and", "or", "for", "on", "with", "as", "at",
     "by", "be", "this", "that")
)


def split_rubric(text: str) -> tuple[str, str]:
    """(question, answer) found in a rubric prompt; see the module docstring."""
    answers = list(_ANSWER_RE.finditer(text))
    if not answers:
        return "", text
    answer = text[answers[-1].end():]
    before = text[: answers[-1].start()]
    questions = list(_QUESTION_RE.finditer(before))
    question = before[questions[-1].end():] if questions else ""
    return question, answer


def grade_text(question: str, answer: str) -> tuple[int, str]:
    """A 1-5 grade of `answer` and the one-line reason, from its words alone (deterministic)."""
    words = [w.lower() for w in _WORD_RE.findall(answer)]
    if not words:
        return 1, "empty answer"
    pairs = list(itertools.pairwise(words))
    repeated = 1.0 - len(set(pairs)) / len(pairs) if pairs else 0.0
    asked = {w.lower() for w in _WORD_RE.findall(question)} - _STOP_WORDS
    used = len(asked & set(words))
    relevance = used / len(asked) if asked else 0.5
    # Short answers say little; past ~60 words length no longer helps.
    fullness = min(1.0, len(words) / 60)
    quality = 0.55 * max(0.0, 1.0 - 2.5 * repeated) + 0.25 * fullness + 0.20 * relevance
    grade = max(1, min(5, 1 + round(4 * quality)))
    reason = f"{len(words)} words, {repeated:.0%} repeated word pairs"
    if asked:
        reason += f", uses {used} of {len(asked)} prompt words"
    return grade, reason


def grade_image(data: bytes) -> tuple[int, str]:
    """A 1-5 grade of an image from its colourfulness and edge contrast (deterministic).

    Raises OSError (from PIL) when `data` is not an image.
    """
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image.thumbnail((128, 128))
    saturation = ImageStat.Stat(image.convert("HSV")).mean[1] / 255
    edges = ImageStat.Stat(image.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0] / 255
    quality = min(1.0, saturation / 0.6) * 0.8 + min(1.0, edges / 0.08) * 0.2
    grade = max(1, min(5, 1 + round(4 * quality)))
    return grade, f"colourfulness {saturation:.2f}, edge contrast {edges:.3f}"


class TextJudge(BasePredictor):
    """Grades the answer in a rubric prompt 1-5 with a reason (gpu-a40-small, ~2 ms per word)."""

    def predict(  # type: ignore[override]
        self,
        prompt: str = Input(description="Rubric with the question and the answer to grade"),
        max_tokens: int = Input(default=256, ge=1, le=2048, description="Maximum reply tokens"),
    ) -> str:
        question, answer = split_rubric(prompt)
        grade, reason = grade_text(question, answer)
        return f"Score: {grade}\nReason: {reason}."[: max_tokens * 8]

    def nominal_seconds(self, inputs: Mapping[str, Any], output: Any) -> float:
        return 0.2 + 0.002 * len(_WORD_RE.findall(str(inputs.get("prompt", ""))))

    def token_counts(self, inputs: Mapping[str, Any], output: Any) -> tuple[int, int]:
        return len(_WORD_RE.findall(str(inputs.get("prompt", "")))), len(str(output).split())


class VisionJudge(BasePredictor):
    """Grades an image 1-5 with a reason; without an image it grades the prompt's text."""

    def predict(  # type: ignore[override]
        self,
        prompt: str = Input(description="Rubric"),
        image: Optional[FileInput] = Input(default=None, description="Image to grade"),
    ) -> str:
        if image is None:
            grade, reason = grade_text(*split_rubric(prompt))
        else:
            try:
                grade, reason = grade_image(image.read())
            except OSError:
                grade, reason = 1, "the file is not an image"
        return f"Score: {grade}\nReason: {reason}."

    def nominal_seconds(self, inputs: Mapping[str, Any], output: Any) -> float:
        return 0.6 if inputs.get("image") is not None else 0.3
