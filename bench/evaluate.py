"""How long the evaluation functions take on a large result frame (no network, no simulator).

    python bench/evaluate.py [--rows 100000]

Prints seconds for: rb.score with a callable of the output and with a callable of the row (the
row is a pandas Series, built per row), rb.leaderboard (bootstrap intervals, win rates) and
rb.diff (10% of the outputs changed). Figures are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

import replibatch as rb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    n = parser.parse_args().rows
    rng = np.random.default_rng(0)
    res = pd.DataFrame({
        "prompt": [f"prompt {i % 500}" for i in range(n)],
        "model": [f"owner/model-{i % 4}" for i in range(n)],
        "item": range(n),
        "output": [f"the cat sat on the mat, answer {i}" for i in range(n)],
        "status": "succeeded",
        "cost_usd": rng.random(n) / 1000,
        "latency_s": rng.random(n) * 3,
    })

    def timed(label: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        value = call()
        print(f"{label:<48} {time.perf_counter() - started:8.2f} s")
        return value

    print(f"{n:,} rows")
    scored = timed("score: callable of the output",
                   lambda: rb.score(res, words=lambda output: len(output.split())))
    timed("score: callable of the row (rb.scorers.contains)",
          lambda: rb.score(res, cat=rb.scorers.contains("cat")))
    timed("leaderboard by model (bootstrap, win rates)", lambda: rb.leaderboard(scored, score="words"))
    after = res.assign(output=res["output"].where(np.arange(n) % 10 > 0, "the dog sat on the mat"))
    changes = timed("diff (10% of outputs changed)", lambda: rb.diff(res, after, on="item"))
    print(f"changed: {int(changes['changed'].sum()):,}")


if __name__ == "__main__":
    main()
