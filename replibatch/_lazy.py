"""Loading ``replibatch``'s public names on first use (PEP 562), and the ``df.replibatch`` hook.

`import replibatch` is what the ``replibatch`` command does first (Python imports a package
before its submodules), so it must cost no pandas, matplotlib or simulator: ``replibatch --help``
and ``replibatch cache info`` then start in a fraction of the time. ``from replibatch import run``
and ``rb.run`` load the module behind the name as before.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from typing import Any

__all__ = ["LAZY", "load", "register_accessor_with_pandas"]

# public name -> (module, attribute of it; None for the module itself)
LAZY: dict[str, tuple[str, str | None]] = {
    "CacheInfo": ("replibatch._store.cache", "CacheInfo"),
    "Comparison": ("replibatch._view.compare", "Comparison"),
    "Leaderboard": ("replibatch._evaluate.leaderboard", "Leaderboard"),
    "ResultCache": ("replibatch._store.cache", "ResultCache"),
    "ajudge": ("replibatch._evaluate.judge", "ajudge"),
    "arun": ("replibatch._engine.runner", "arun"),
    "atrain": ("replibatch._engine.train", "atrain"),
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
    "train": ("replibatch._engine.train", "train"),
    "trained_grid": ("replibatch._table.grid", "trained_grid"),
}




def load(name: str) -> Any:
    """Import and return the public name `name`. Raises AttributeError for any other name (as a
    module attribute lookup does) and ImportError when its module cannot be imported."""
    try:
        module_name, attribute = LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'replibatch' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)


def _register_accessor() -> None:
    importlib.import_module("replibatch._table.accessor")  # registers df.replibatch on import


class _AccessorOnPandasImport:
    """An import hook that registers ``df.replibatch`` as soon as pandas finishes importing.

    ``import replibatch; import pandas; df.replibatch.run(...)`` must work as it did when
    `import replibatch` imported pandas: this finder sees the import of ``pandas``, lets the other
    finders locate it, and wraps its loader so that the accessor module is imported right after
    pandas itself. It removes itself on first use.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if fullname != "pandas":
            return None
        with contextlib.suppress(ValueError):  # already removed by a concurrent import
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec("pandas")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            _register_accessor()

        # Only this loader instance, for this one import of pandas.
        loader.exec_module = exec_then_register  # type: ignore[method-assign]
        return spec


def register_accessor_with_pandas() -> None:
    """Register ``df.replibatch`` now if pandas is imported, else as soon as it is."""
    if "pandas" in sys.modules:
        _register_accessor()
    elif not any(isinstance(finder, _AccessorOnPandasImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AccessorOnPandasImport())
