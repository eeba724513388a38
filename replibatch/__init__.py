"""replibatch: run pandas DataFrames against Replicate models.

    import replibatch as rb
    res = rb.run(df, model="meta/meta-llama-3-8b-instruct")
    rb.compare(res, index="prompt", columns="model")

Every row becomes a prediction, fanned out under Replicate's rate limits, cached on disk by model
version and input, and returned as the input frame plus output, status, timing and cost columns.
"""

import typing as _typing

from replibatch import _lazy
from replibatch.errors import (
    AuthenticationError,
    ConfigurationError,
    ReplibatchError,
    ReplicateAPIError,
)

if _typing.TYPE_CHECKING:  # what the lazy names below are, for mypy and IDEs
    from replibatch import plot, scorers
    from replibatch._engine.runner import arun, run
    from replibatch._engine.train import atrain, train
    from replibatch._evaluate.diff import diff
    from replibatch._evaluate.judge import ajudge, judge
    from replibatch._evaluate.leaderboard import Leaderboard, leaderboard
    from replibatch._evaluate.ratings import rate, ratings
    from replibatch._evaluate.score import score
    from replibatch._spend.estimate import estimate
    from replibatch._spend.spend import set_budget, spend
    from replibatch._store.cache import CacheInfo, ResultCache, cache_info, clear_cache
    from replibatch._table.grid import grid, trained_grid
    from replibatch._view.browse import browse
    from replibatch._view.compare import Comparison, compare

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CacheInfo",
    "Comparison",
    "ConfigurationError",
    "Leaderboard",
    "ReplibatchError",
    "ReplicateAPIError",
    "ResultCache",
    "__version__",
    "ajudge",
    "arun",
    "atrain",
    "browse",
    "cache_info",
    "clear_cache",
    "compare",
    "diff",
    "estimate",
    "grid",
    "judge",
    "leaderboard",
    "plot",
    "rate",
    "ratings",
    "run",
    "score",
    "scorers",
    "set_budget",
    "spend",
    "train",
    "trained_grid",
]

if not _typing.TYPE_CHECKING:  # mypy sees the imports above; a typo stays an error for it

    def __getattr__(name):
        """A public name of `replibatch._lazy.LAZY`, imported on first use and then kept."""
        value = _lazy.load(name)
        globals()[name] = value
        return value

    def __dir__():
        return sorted(set(globals()) | set(__all__))


# `import replibatch` imports no pandas, yet `df.replibatch` must exist once pandas is there.
_lazy.register_accessor_with_pandas()
