"""replibatch: run pandas DataFrames against Replicate models.

    import replibatch as rb
    res = rb.run(df, model="meta/meta-llama-3-8b-instruct")
    rb.compare(res, index="prompt", columns="model")

Every row becomes a prediction, fanned out under Replicate's rate limits, cached on disk by model
version and input, and returned as the input frame plus output, status, timing and cost columns.
"""

from . import accessor as _accessor  # noqa: F401 - registers df.replibatch
from . import plot, scorers
from .browse import browse
from .cache import CacheInfo, ResultCache, cache_info, clear_cache
from .compare import Comparison, compare
from .diff import diff
from .errors import (
    AuthenticationError,
    ConfigurationError,
    ReplibatchError,
    ReplicateAPIError,
)
from .estimate import estimate
from .grid import grid
from .judge import ajudge, judge
from .leaderboard import Leaderboard, leaderboard
from .ratings import rate, ratings
from .runner import arun, run
from .score import score
from .spend import set_budget, spend

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
]
