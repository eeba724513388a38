"""The public surface, pinned: what `import replibatch` and its public modules export.

Adding or removing a public name is a deliberate edit of the lists below (and of README.md).
The checks read attributes with `getattr`, never `vars()`, so they hold whether a package binds
its names at import or on first access (PEP 562 `__getattr__`).
"""

from __future__ import annotations

import importlib
import pkgutil
import types
from typing import Any

import pytest

import replibatch

EXPECTED: dict[str, list[str]] = {
    "replibatch": [
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
    ],
    "replibatch.plot": [
        "cost",
        "cost_summary",
        "cost_vs_latency",
        "heatmap",
        "heatmap_table",
        "latency",
        "latency_groups",
        "peak_in_flight",
        "score_vs_cost",
        "timeline",
        "timeline_spans",
    ],
    "replibatch.scorers": [
        "contains",
        "equals",
        "json_valid",
        "length",
        "regex",
        "similarity",
        "text_of",
        "text_ratio",
    ],
    "replibatch.sim": [
        "ACCOUNTS",
        "HARDWARE",
        "BasePredictor",
        "FileInput",
        "Input",
        "OutputFile",
        "SimDeployment",
        "SimModel",
        "SimOptions",
        "SimServer",
        "Stats",
        "default_deployments",
        "default_models",
        "serve",
    ],
    "replibatch.errors": [
        "AuthenticationError",
        "ConfigurationError",
        "InvalidInputError",
        "NotFoundError",
        "OutcomeUnknownError",
        "RateLimitedError",
        "ReplibatchError",
        "ReplicateAPIError",
        "TransientError",
    ],
}

# Modules directly under replibatch/ that are public; every other one is `_name` (a private
# module or package).
PUBLIC_MODULES = {"errors", "plot", "scorers", "sim"}

# The simulator's modules keep the names they had before the rule: tests and benchmarks import
# them (replibatch.sim.models, .cog, .trainers ...) and the trainings work lives in three of them.
# Only `replibatch.sim` itself is its API; a new simulator module is a deliberate edit here.
SIM_MODULES = {
    "__main__", "app", "catalog", "cli", "cog", "context", "credit", "delivery", "faults", "files",
    "gate", "habits", "judges", "lifecycle", "listing", "models", "predictions", "ratelimit",
    "responses", "server", "state", "streams", "trainers", "training_state", "trainings",
}


def _defined_here(value: Any) -> bool:
    """True for what the package itself defines (classes, functions, data), False for modules
    and for what a module only imported for its own use (typing names, stdlib helpers)."""
    if isinstance(value, types.ModuleType):
        return False
    module = getattr(value, "__module__", None)
    # Plain data (a dict, a str constant) has no __module__ of its own.
    return module is None or str(module).startswith("replibatch")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_all_is_exactly_the_pinned_list(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    assert sorted(exported) == sorted(EXPECTED[name])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_name_in_all_resolves(name: str) -> None:
    module = importlib.import_module(name)
    missing = []
    for public in module.__all__:
        try:
            getattr(module, public)
        except AttributeError:
            missing.append(public)
    assert missing == []


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_public_name_outside_all(name: str) -> None:
    module = importlib.import_module(name)
    stray = [
        public for public in dir(module)
        if not public.startswith("_") and public not in module.__all__
        and _defined_here(getattr(module, public))
    ]
    assert stray == [], f"{name} exports {stray} without listing them in __all__ (or make them _private)"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, Any] = {}
    exec("from replibatch import *", namespace)  # noqa: S102 - the star import is the subject
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(EXPECTED["replibatch"])


def test_the_public_names_are_the_right_objects() -> None:
    """The top-level re-exports are the very objects of the public modules (one class, not two)."""
    import replibatch.errors as errors

    top_level_errors = [name for name in EXPECTED["replibatch"] if name.endswith("Error")]
    assert top_level_errors  # the four an everyday user catches; the rest stay in rb.errors
    for name in top_level_errors:
        assert getattr(replibatch, name) is getattr(errors, name)
    assert replibatch.plot is importlib.import_module("replibatch.plot")
    assert replibatch.scorers is importlib.import_module("replibatch.scorers")
    assert isinstance(replibatch.__version__, str)


def test_implementation_modules_are_private() -> None:
    public = sorted(
        info.name for info in pkgutil.iter_modules(replibatch.__path__)
        if not info.name.startswith("_") and info.name not in PUBLIC_MODULES
    )
    assert public == [], f"modules {public} are neither _private nor in the pinned public set"
    # Inside a private package every module is private by its package's name; check that the
    # packages exist where the layout says, so this test cannot pass on an empty walk.
    private = {info.name for info in pkgutil.iter_modules(replibatch.__path__) if info.name.startswith("_")}
    assert {"_engine", "_http", "_store", "_table", "_spend", "_view", "_evaluate", "_cli"} <= private


def test_the_simulator_modules_are_the_pinned_set() -> None:
    import replibatch.sim as sim

    found = {info.name for info in pkgutil.iter_modules(sim.__path__)}
    # `_name` modules are private by name and may come and go freely.
    assert {name for name in found if not name.startswith("_") or name == "__main__"} == SIM_MODULES
