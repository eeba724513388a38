"""The public entry points: explicit, documented options; one error, never an ExceptionGroup."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys

import anyio
import pandas as pd
import pytest
import replicate

import replibatch as rb
from replibatch._engine.options import RunOptions
from replibatch._engine.runner import one_error
from replibatch._engine.tokens import resolve_tokens
from replibatch.errors import AuthenticationError, ConfigurationError
from replibatch.sim import serve

RIGHT = "r8_the_right_one"
TEXT = "replibatch/tiny-llama"

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


@pytest.mark.parametrize("entry", [rb.run, rb.arun], ids=["run", "arun"])
def test_every_option_is_keyword_only_and_documented(entry):
    params = list(inspect.signature(entry).parameters.values())
    assert [p.name for p in params[:3]] == ["df", "model", "inputs"]
    options = params[3:]
    assert options, "the options are explicit parameters"
    doc = entry.__doc__ or ""
    for param in options:
        assert param.kind is inspect.Parameter.KEYWORD_ONLY, param.name
        assert param.annotation is not inspect.Parameter.empty, param.name
        # Documented as its own entry: the name alone on a line, then an indented description.
        assert re.search(rf"^\s+{param.name}\n\s+\S", doc, re.M), f"{param.name} is undocumented"
    for word in ("Raises", "ConfigurationError", "AuthenticationError", "ExceptionGroup"):
        assert word in doc


def test_run_and_arun_take_the_same_options_as_the_typed_record():
    run_opts = list(inspect.signature(rb.run).parameters)[3:]
    arun_opts = list(inspect.signature(rb.arun).parameters)[3:]
    fields = list(RunOptions.__dataclass_fields__)
    assert run_opts == arun_opts == fields
    defaults = RunOptions()
    for name, param in inspect.signature(rb.run).parameters.items():
        if name in fields:
            assert param.default == getattr(defaults, name), name


def test_options_are_checked_before_anything_is_sent():
    with pytest.raises(ConfigurationError, match="concurrency"):
        RunOptions(concurrency=0).checked()
    with pytest.raises(ConfigurationError, match="retries"):
        RunOptions(retries=True).checked()  # type: ignore[arg-type]
    # api_token (one token, or a list of tokens and profiles) is checked by resolve_tokens.
    with pytest.raises(ConfigurationError, match="api_token"):
        resolve_tokens(42)
    assert RunOptions().checked()[0] == 128


def on_loop(function, *args):
    """`function(*args)` on an asyncio loop (the engine's cancellation class is the loop's)."""

    async def main():
        return function(*args)

    return anyio.run(main, backend="asyncio")


def test_several_simultaneous_failures_surface_as_one_error():
    first, second = AuthenticationError("refused"), ConfigurationError("bad")
    group = BaseExceptionGroup("tasks", [ExceptionGroup("inner", [first]), second])
    chosen = on_loop(one_error, group)
    assert chosen is first
    if sys.version_info >= (3, 11):
        assert any("1 more failure" in note for note in chosen.__notes__)


def test_an_interrupt_wins_over_failures_and_cancellations_are_dropped():
    cancelled = asyncio.CancelledError()
    interrupt = KeyboardInterrupt()
    group = BaseExceptionGroup("tasks", [cancelled, ValueError("x"), interrupt])
    assert on_loop(one_error, group) is interrupt
    only_cancelled = BaseExceptionGroup("tasks", [cancelled])
    assert on_loop(one_error, only_cancelled) is only_cancelled


def test_a_run_whose_creates_all_fail_auth_raises_one_authentication_error():
    # A bare version id needs no request before the creates: all 8 rows send theirs at once and
    # each is refused; the caller sees AuthenticationError itself, never an ExceptionGroup.
    with serve(time_scale=0.01, api_tokens={RIGHT}) as sim:
        version = replicate.Client(api_token=RIGHT, base_url=sim.url).models.get(TEXT).latest_version.id
        df = pd.DataFrame({"prompt": [f"p{i}" for i in range(8)]})
        with pytest.raises(AuthenticationError):
            rb.run(df, model=version, api_token="r8_wrong", base_url=sim.url, progress=False,
                   cache=False)
        assert sim.stats.creates == 0
