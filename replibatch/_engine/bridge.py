"""The sync bridge behind `run`: the run gets its own event loop in a worker thread, so it works
in scripts and inside a running loop (Jupyter) alike; Ctrl-C cancels it there and hands control
back within `RETURN_AFTER_INTERRUPT` seconds, the cancels still going finishing at exit."""

from __future__ import annotations

import atexit
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel

from replibatch._engine.session import CLEANUP_SECONDS

__all__ = ["RETURN_AFTER_INTERRUPT", "run_in_thread"]

# `run` hands control back this long after an interrupt whatever the number in flight; cancels
# still going continue in its worker thread (a script's exit waits for them).
RETURN_AFTER_INTERRUPT = 4.0

T = TypeVar("T")

_cleanups: list[threading.Event] = []


def _finish_cleanup_at_exit(done: threading.Event) -> None:
    """A run interrupted while its cancels were still going: the user has control back, and the
    interpreter's exit waits (bounded) for those cancels, so a script's Ctrl-C still stops the
    billing instead of killing the worker thread mid-way."""
    if not _cleanups:
        atexit.register(lambda: [event.wait(CLEANUP_SECONDS + 5) for event in _cleanups])
    _cleanups.append(done)


class _Box(Generic[T]):
    """What the worker thread hands back to the caller's thread."""

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.token: anyio.lowlevel.EventLoopToken | None = None
        self.has_result = False
        self.result: T | None = None
        self.error: BaseException | None = None


def run_in_thread(
    main: Callable[[], Awaitable[T]],
    *,
    thread_name: str = "replibatch-run",
    canceled: str = "the run was canceled",
) -> T:
    """``await main()`` on a new asyncio loop in a worker thread named `thread_name`; its
    result, or its error raised here. Raises KeyboardInterrupt when interrupted (after asking
    the loop to cancel) or, saying `canceled`, when the run was canceled without a result."""
    box: _Box[T] = _Box()
    ready = threading.Event()
    done = threading.Event()

    async def body() -> None:
        with anyio.CancelScope() as scope:
            box.scope = scope
            box.token = anyio.lowlevel.current_token()
            ready.set()
            box.result = await main()
            box.has_result = True

    def worker() -> None:
        try:
            anyio.run(body, backend="asyncio")
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.error = exc
        finally:
            ready.set()
            done.set()

    threading.Thread(target=worker, name=thread_name, daemon=True).start()
    try:
        # Event.wait, not Thread.join: a KeyboardInterrupt inside join() can leave the thread
        # looking finished while it still runs (a known CPython bug before 3.12).
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        ready.wait()
        if box.scope is not None and not done.is_set():
            try:
                anyio.from_thread.run_sync(box.scope.cancel, token=box.token)
            except RuntimeError:
                pass  # the loop finished meanwhile
        if not done.wait(RETURN_AFTER_INTERRUPT):
            _finish_cleanup_at_exit(done)
        raise
    if box.error is not None:
        raise box.error
    if not box.has_result:
        raise KeyboardInterrupt(canceled)
    return box.result  # type: ignore[return-value]
