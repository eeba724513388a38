"""How far a training is, read from its logs (pure).

Trainings report no progress field; trainers print it. Most print tqdm bars (``train:  40%|####
| 80/200 [...]``, the shape the simulator's demo trainers log too) and some print ``step 80/200``.
:func:`training_progress` finds the last such report in the logs, so a progress bar can follow a
training while it runs. A bar's carriage-return updates count as separate reports.
"""

from __future__ import annotations

import re

__all__ = ["training_progress"]

# tqdm: "NN%|" (the percentage glued to the bar); steps: "step 80/200", "steps: 80 / 200",
# "epoch 2/10".
_TQDM = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)%\|")
_STEPS = re.compile(r"\b(?:step|steps|epoch|iteration|iter)s?\s*[:=]?\s*(\d+)\s*/\s*(\d+)\b",
                    re.IGNORECASE)


def training_progress(logs: str | None) -> float | None:
    """The fraction done (0..1) per the last progress report in ``logs``, or None if none.

    A report past 100% (or ``step 12/10``) reads as 1.0. Never raises.
    """
    if not isinstance(logs, str) or not logs:
        return None
    best: tuple[int, float] | None = None  # (end position, fraction): the latest report wins
    for match in _TQDM.finditer(logs):
        best = _later(best, match.end(), float(match.group(1)) / 100.0)
    for match in _STEPS.finditer(logs):
        done, total = int(match.group(1)), int(match.group(2))
        if total > 0:
            best = _later(best, match.end(), done / total)
    return None if best is None else min(1.0, max(0.0, best[1]))


def _later(best: tuple[int, float] | None, end: int, fraction: float) -> tuple[int, float]:
    return (end, fraction) if best is None or end > best[0] else best
