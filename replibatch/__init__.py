"""replibatch: run pandas DataFrames against Replicate models.

    import replibatch as rb
    res = rb.run(df, model="meta/meta-llama-3-8b-instruct")
    rb.compare(res, index="prompt", columns="model")

Every row becomes a prediction, fanned out under Replicate's rate limits, cached on disk by model
version and input, and returned as the input frame plus output, status, timing and cost columns.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from typing import TYPE_CHECKING, Any

from replibatch.errors import (
    AuthenticationError,
    ConfigurationError,
    ReplibatchError,
    ReplicateAPIError,
)

if TYPE_CHECKING:  # what the lazy names below are, for mypy and IDEs
    from replibatch import plot, scorers
    from replibatch._engine.runner import arun, run
    from replibatch._evaluate.diff import diff
    from replibatch._evaluate.judge import ajudge, judge
    from replibatch._evaluate.leaderboard import Leaderboard, leaderboard
    from replibatch._evaluate.ratings import rate, ratings
    from replibatch._evaluate.score import score
    from replibatch._spend.estimate import estimate
    from replibatch._spend.spend import set_budget, spend
    from replibatch._store.cache import CacheInfo, ResultCache, cache_info, clear_cache
    from replibatch._table.grid import grid
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

# Public names imported on first use (PEP 562), so that `import replibatch` - which the
# `replibatch` command does first - costs no pandas, matplotlib or simulator: `replibatch --help`
# and `replibatch cache info` start in a fraction of the time. `from replibatch import run` and
# `rb.run` load them as before.
_LAZY: dict[str, tuple[str, str | None]] = {
    "CacheInfo": ("replibatch._store.cache", "CacheInfo"),
    "Comparison": ("replibatch._view.compare", "Comparison"),
    "Leaderboard": ("replibatch._evaluate.leaderboard", "Leaderboard"),
    "ResultCache": ("replibatch._store.cache", "ResultCache"),
    "ajudge": ("replibatch._evaluate.judge", "ajudge"),
    "arun": ("replibatch._engine.runner", "arun"),
    "browse": ("replibatch._view.browse", "browse"),
    "cache_info": ("replibatch._store.cache", "cache_info"),
    "clear_cache": ("replibatch._store.cache", "clear_cache"),
    "compare": ("replibatch._view.compare", "compare"),
    "diff": ("replibatch._evaluate.diff", "diff"),
    "estimate": ("replibatch._spend.estimate", "estimate"),
    "grid": ("replibatch._table.grid", "grid"),
    "judge": ("replibatch._evaluate.judge", "judge"),
    "leaderboard": ("replibatch._evaluate.leaderboard", "leaderboard"),
    "plot": ("replibatch.plot", None),
    "rate": ("replibatch._evaluate.ratings", "rate"),
    "ratings": ("replibatch._evaluate.ratings", "ratings"),
    "run": ("replibatch._engine.runner", "run"),
    "score": ("replibatch._evaluate.score", "score"),
    "scorers": ("replibatch.scorers", None),
    "set_budget": ("replibatch._spend.spend", "set_budget"),
    "spend": ("replibatch._spend.spend", "spend"),
}


def __getattr__(name: str) -> Any:
    """Import a public name of `_LAZY` on first use and keep it; AttributeError otherwise."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _register_accessor() -> None:
    """Register ``df.replibatch`` (the pandas accessor) now that pandas is imported."""
    importlib.import_module("replibatch._table.accessor")


class _AccessorOnPandasImport:
    """An import hook that registers ``df.replibatch`` as soon as pandas finishes importing.

    `import replibatch` no longer imports pandas, yet ``import replibatch; import pandas;
    df.replibatch.run(...)`` must work as before: this finder sees the import of ``pandas``,
    lets the other finders locate it, and wraps its loader so the accessor module is imported
    right after pandas itself. It removes itself on first use.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "pandas":
            return None
        with contextlib.suppress(ValueError):  # another thread's import got here first
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("pandas")
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register_accessor()

        loader.exec_module = exec_then_register  # type: ignore[union-attr]
        return spec


if "pandas" in sys.modules:
    _register_accessor()
else:
    sys.meta_path.insert(0, _AccessorOnPandasImport())
