"""Validation: what checking every row against the input schema costs before a run starts.

    python bench/validation.py [--rows 100000]

Plans a frame of ``--rows`` rows (distinct prompts, a sweep of temperatures and seeds, one
column of whole floats as pandas makes them) and shapes + validates every row against the demo
text model's schema, as ``run`` does after the model lookup; then the same with one invalid value
in every tenth row. Figures are printed, not asserted; they are noisy on a shared machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from replibatch._table.frame import plan_jobs
from replibatch._table.schema import InputSchema, shape_input
from replibatch.sim import default_models


def frame(rows: int, *, invalid_every: int | None = None) -> pd.DataFrame:
    temperature = np.tile([0.2, 0.7, 1.2], rows // 3 + 1)[:rows].astype(object)
    if invalid_every:
        temperature[::invalid_every] = "abc"
    return pd.DataFrame({
        "prompt": [f"tell me about thing {i}" for i in range(rows)],
        "temperature": temperature,
        "seed": np.arange(rows) % 97,
        "max_tokens": np.where(np.arange(rows) % 2, 64.0, np.nan),  # floats with gaps
    })


def measure(df: pd.DataFrame, schema: InputSchema) -> tuple[float, float, int]:
    started = time.perf_counter()
    plan = plan_jobs(df, model="replibatch/tiny-llama")
    planned = time.perf_counter()
    invalid = sum(1 for job in plan.jobs if shape_input(job.input, schema)[1])
    return planned - started, time.perf_counter() - planned, invalid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    model = next(m for m in default_models() if m.ref == "replibatch/tiny-llama")
    schema = InputSchema.from_openapi(model.openapi_schema)
    assert schema is not None
    for label, df in (("all valid", frame(args.rows)),
                      ("every 10th invalid", frame(args.rows, invalid_every=10))):
        plan_s, check_s, invalid = measure(df, schema)
        print(f"{label:>20}: {args.rows:,} rows · planning {plan_s:.2f} s · schema check "
              f"{check_s:.2f} s ({args.rows / check_s:,.0f} rows/s) · {invalid:,} invalid")


if __name__ == "__main__":
    main()
