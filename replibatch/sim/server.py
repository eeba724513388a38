"""The simulator as a running server: `SimServer` runs one `SimApp` on its own thread and event
loop, so tests, notebooks and the command line use it from synchronous code or from inside a
running event loop (a Jupyter cell) alike.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from replibatch.sim.app import SimApp
from replibatch.sim.credit import CreditAccounts
from replibatch.sim.faults import SimOptions
from replibatch.sim.models import ModelRegistry, SimDeployment, SimModel
from replibatch.sim.ratelimit import account_options

# sim/trainings.py imports these two from here (its after-create faults answer as predictions').
from replibatch.sim.responses import GATEWAY_REASONS as _GATEWAY_REASONS  # noqa: F401
from replibatch.sim.responses import gateway_error as _gateway_error  # noqa: F401
from replibatch.sim.responses import problem
from replibatch.sim.state import Stats
from replibatch.sim.trainings import TrainingService

__all__ = ["SimServer", "problem"]


class SimServer:
    """A running simulator: ``url``, ``stats``, ``options``, ``models``; ``configure()``, ``close()``.

    Use :func:`replibatch.sim.serve` to make one. Usable as a context manager.
    """

    def __init__(
        self,
        options: SimOptions,
        models: list[SimModel],
        deployments: list[SimDeployment],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registry = ModelRegistry(models, deployments)
        self.registry.setup()
        self.stats = Stats()
        self._app = SimApp(options.checked(), self.registry, self.stats)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replibatch-sim",
                                        daemon=True)
        self._closed = False
        self._thread.start()
        try:
            self.url: str = self._call(self._app.start(host, port))
        except BaseException:
            self._shutdown_loop()
            raise

    @property
    def models(self) -> dict[str, SimModel]:
        """Hosted models by ``owner/name`` (``hardware``, ``pricing``, ``version_id`` ...)."""
        return dict(self.registry.models)

    @property
    def credit(self) -> CreditAccounts:
        """Prepaid credit by token (``credit=``): ``remaining(token)``, ``charged()``."""
        return self._app.credit

    @property
    def trainings(self) -> TrainingService:
        """Trainings, created models and their counters (``trainings.stats``)."""
        return self._app.trainings

    @property
    def deployments(self) -> dict[str, SimDeployment]:
        return dict(self.registry.deployments)

    @property
    def options(self) -> SimOptions:
        """The options in force (immutable; change them with :meth:`configure`)."""
        return self._app.options

    def configure(self, **changes: Any) -> SimOptions:
        """Change options while the server runs (e.g. ``error_rate=0.3``); returns the new options.

        ``account="low-credit"`` (a name from :data:`~replibatch.sim.ACCOUNTS`) stands for its
        four rate fields. Raises TypeError for an unknown option and ValueError for a bad value
        or unknown account (nothing changes).
        """
        if "account" in changes:
            changes = {**account_options(changes.pop("account")), **changes}
        new = self._app.options.replace(**changes)
        if threading.current_thread() is self._thread:
            self._app.reconfigure(new)
        else:
            async def apply() -> None:
                self._app.reconfigure(new)
            self._call(apply())
        return new

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    def close(self) -> None:
        """Stop serving: cancels running predictions and closes every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._app.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        # The cleanup runs on the server's own loop thread, never on the caller's: the caller
        # may be inside a running event loop (a Jupyter cell), where run_until_complete fails.
        loop = self._loop

        async def finish() -> None:
            await loop.shutdown_asyncgens()
            await loop.shutdown_default_executor()

        try:
            if self._thread.is_alive() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=30)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=30)
            if not self._thread.is_alive() and not loop.is_closed():
                loop.close()

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.url
        return f"<SimServer {state}>"
