"""The ``df.replibatch`` pandas accessor: ``df.replibatch.run(model=...)``."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["ReplibatchAccessor"]


@pd.api.extensions.register_dataframe_accessor("replibatch")
class ReplibatchAccessor:
    """Run this frame against Replicate; the arguments are those of ``replibatch.run``."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df

    def run(self, model: str | None = None, inputs: Any = None, **options: Any) -> pd.DataFrame:
        from replibatch._engine.runner import run

        return run(self._df, model, inputs, **options)

    async def arun(self, model: str | None = None, inputs: Any = None, **options: Any) -> pd.DataFrame:
        from replibatch._engine.runner import arun

        return await arun(self._df, model, inputs, **options)
