"""A prediction's life on the simulator: queue, run the model, stream, finish, cancel, expire.

`Lifecycle` owns the simulator's `PredictionBook`: a prediction enters it through
:meth:`Lifecycle.start`. Everything here runs on the server's event loop, except the model's CPU
work (:meth:`Lifecycle._predict`), which runs on a worker thread.
"""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from typing import Any

from replibatch._spend.cost import PriceTable, cost_of
from replibatch._store.filestore import decode_data_uri
from replibatch.sim.cog import FileInput, OutputFile, call_kwargs, materialize
from replibatch.sim.context import PredictionBook, SimContext
from replibatch.sim.delivery import Blob, publish_size
from replibatch.sim.models import SimModel
from replibatch.sim.responses import parse_query_time
from replibatch.sim.state import Prediction, iso

__all__ = ["Lifecycle"]

_FILE_PATH = re.compile(r"/v1/files/(?P<id>[^/]+)(?:/download)?$")
_DELIVERY_PATH = re.compile(r"/delivery/(?P<key>[^/]+/[^/]+)$")
_STREAM_TICK = 0.01  # streamed items due within this many seconds are released together


class Lifecycle:
    """Runs the predictions of one simulator and keeps the book of them."""

    def __init__(self, ctx: SimContext) -> None:
        self.ctx = ctx
        self.book = PredictionBook()

    def start(self, p: Prediction, cancel_after: float | None) -> None:
        """Record `p` (created just now) and start running it; with `cancel_after`, its deadline
        is that many real seconds after creation. Must be called on the server's event loop."""
        loop = asyncio.get_running_loop()
        # The time as the API writes it (whole microseconds), so a client's created_after of a
        # prediction's own created_at excludes exactly that prediction.
        self.book.add(p, parse_query_time(iso(self.ctx.clock.wall(p.created))))
        p.task = loop.create_task(self._run(p))
        if cancel_after is not None:
            # Real seconds from creation ("The lifetime is measured from when the prediction is
            # created", parameters_cancel_after_header), like every time the client sees.
            p.deadline = p.created + cancel_after
            loop.call_later(cancel_after, self._deadline_reached, p)

    async def stop(self) -> None:
        """Cancel every running prediction and wait until they have finished."""
        tasks = [p.task for p in self.book.unfinished() if p.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, p: Prediction) -> None:
        o = self.ctx.options
        scale = o.time_scale
        try:
            started = self.ctx.clock.now()
            if o.queue_delay:
                await asyncio.sleep(o.queue_delay * scale)
                # Queued for the scheduled time, not until a busy loop woke up (see _model_done).
                started = min(self.ctx.clock.now(), p.created + o.queue_delay * scale)
            p.status, p.started = "processing", started
            fail = self.ctx.dice.roll(o.failure_rate)
            loop = asyncio.get_running_loop()
            output, streams, nominal, tokens = await loop.run_in_executor(
                None, self._predict, p.model, p.input
            )
            p.token_counts = tokens
            duration = (o.predict_time if o.predict_time is not None else nominal) * scale
            if fail:
                await self._sleep_until(p.started + duration / 2)
                self.ctx.stats.count_fault("model_failure")
                self._finish(p, "failed", o.failure_message, at=self._model_done(p, duration / 2))
                return
            if streams and isinstance(output, list) and output:
                await self._play(p, output, duration)
            else:
                await self._sleep_until(p.started + duration)
                p.output = self._publish(p, output)
            self._finish(p, "succeeded", at=self._model_done(p, duration))
        except asyncio.CancelledError:
            self._finish(p, "canceled")
            raise
        except Exception as exc:  # the model raised: the prediction fails, as on Replicate
            p.logs += f"Traceback (most recent call last):\n{type(exc).__name__}: {exc}\n"
            self._finish(p, "failed", str(exc) or type(exc).__name__)

    def _predict(self, model: SimModel, inputs: dict[str, Any]) -> tuple[Any, bool, float, Any]:
        """Runs on a worker thread: the model's CPU work, off the event loop."""
        kwargs = call_kwargs(model.predictor, inputs)
        for name in model.validator.uri_fields:
            if isinstance(kwargs.get(name), str):
                kwargs[name] = FileInput(self.fetch(kwargs[name]), name)
        output, streams = materialize(model.predictor.predict(**kwargs))
        nominal = model.predictor.nominal_seconds(kwargs, output)
        return output, streams, nominal, model.predictor.token_counts(kwargs, output)

    def fetch(self, uri: str) -> bytes:
        """Bytes of a file input: a data: URI or a URL of this simulator's file stores.

        Raises ValueError when the URI cannot be read (the prediction then fails).
        """
        if uri.startswith("data:"):
            try:
                return decode_data_uri(uri)[0]
            except ValueError as exc:
                raise ValueError(f"could not decode data URI: {exc}") from None
        path = urllib.parse.urlsplit(uri).path
        if match := _FILE_PATH.search(path):
            record = self.ctx.files.get(match.group("id"))
            if record is not None:
                return record.data
        elif match := _DELIVERY_PATH.search(path):
            blob = self.ctx.blobs.get(match.group("key"))
            if blob is not None:
                return blob.data
        raise ValueError(f"could not download {uri}: not found (the simulator has no network)")

    async def _play(self, p: Prediction, items: list[Any], duration: float) -> None:
        """Release streamed items over the predict time, as a model yielding them would."""
        assert p.started is not None
        prefill = min(p.model.predictor.prefill_seconds * self.ctx.options.time_scale, duration)
        due = [p.started + prefill + (duration - prefill) * (i + 1) / len(items)
               for i in range(len(items))]
        p.output = []
        released = 0
        while released < len(items):
            now = self.ctx.clock.now()
            while released < len(items) and due[released] <= now + _STREAM_TICK / 2:
                p.output.append(items[released])
                released += 1
            if released and p.first_output is None:
                # The model's own time of its first item, not a busy loop's late wake-up.
                p.first_output = min(now, due[0])
            p.notify()
            if released < len(items):
                await asyncio.sleep(max(_STREAM_TICK, due[released] - now))
        await self._sleep_until(p.started + duration)

    def _model_done(self, p: Prediction, duration: float) -> float:
        """When the simulated model finished: `duration` after it started, not when this busy
        loop woke up. Replicate's ``metrics.predict_time`` is the model's own run time (the
        ``predict_time`` billed, pricing-facts.md); a simulator starved of CPU by a loaded
        machine must not bill, or teach a budget, its own scheduling lag (pricing-facts.md: public
        models bill `metrics.predict_time`, "active prediction time only"). Never earlier than
        an item already streamed, so ``time_to_first_token <= predict_time`` holds."""
        assert p.started is not None
        planned = p.started + duration
        if p.first_output is not None:
            planned = max(planned, p.first_output)
        return min(self.ctx.clock.now(), planned)

    async def _sleep_until(self, deadline: float) -> None:
        delay = deadline - self.ctx.clock.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def _publish(self, p: Prediction, output: Any) -> Any:
        """Store file outputs and replace them by their (expiring) URLs."""
        if isinstance(output, OutputFile):
            key = f"{p.id}/{output.name}"
            self.ctx.blobs[key] = Blob(output, publish_size(output, self.ctx.options))
            p.file_keys.append(key)
            return f"{self.ctx.options.output_url_base or self.ctx.base_url}/delivery/{key}"
        if isinstance(output, list):
            return [self._publish(p, item) for item in output]
        return output

    def _finish(self, p: Prediction, status: str, error: str | None = None,
                at: float | None = None) -> None:
        if p.terminal:
            return
        now = self.ctx.clock.now() if at is None else at
        p.status, p.error, p.completed = status, error, now
        metrics: dict[str, Any] = {"total_time": round(now - p.created, 6)}
        if p.started is not None:
            predict_time = now - p.started
            metrics["predict_time"] = round(predict_time, 6)
            tokens = p.token_counts
            if tokens is not None and status == "succeeded":
                metrics["input_token_count"], metrics["output_token_count"] = tokens
                if predict_time > 0:
                    metrics["tokens_per_second"] = round(tokens[1] / predict_time, 3)
                if p.first_output is not None:
                    metrics["time_to_first_token"] = round(p.first_output - p.started, 6)
        p.metrics = metrics
        self._charge(p)
        p.done.set()
        p.notify()
        self.ctx.stats.count_finished()
        retention = self.ctx.options.retention * self.ctx.options.time_scale
        asyncio.get_running_loop().call_later(retention, self._expire, p)

    def _charge(self, p: Prediction) -> None:
        """Bill the creating token what the price table says this prediction cost."""
        if p.token is None or self.ctx.credit.remaining(p.token) is None:
            return  # unlimited credit: no need to price it
        record = p.to_json(self.ctx.base_url, self.ctx.clock)
        cost, _basis = cost_of(PriceTable.default(), p.model.ref, record)
        self.ctx.credit.charge(p.token, cost)

    def _expire(self, p: Prediction) -> None:
        """Delete inputs, outputs, logs and files, as Replicate does an hour after completion."""
        p.data_removed, p.output, p.input, p.logs = True, None, {}, ""
        for key in p.file_keys:
            self.ctx.blobs.pop(key, None)
        p.file_keys.clear()

    def cancel(self, p: Prediction, status: str = "canceled", at: float | None = None) -> bool:
        if p.terminal:
            return False
        self._finish(p, status, at=at)
        if p.task is not None:
            p.task.cancel()
        if status == "aborted":
            self.ctx.stats.count_aborted()
        else:
            self.ctx.stats.count_cancel()
        return True

    def _deadline_reached(self, p: Prediction) -> None:
        # Spec (prediction status): "`canceled` means the prediction was canceled (either by the
        # user or because it reached its deadline while running). `aborted` means the prediction
        # was terminated before it started running". Aborted: no started_at, no predict_time.
        # Stamped at the deadline itself, not when this callback ran: a busy loop must not bill
        # (or report) more predict time than the deadline allows.
        at = min(self.ctx.clock.now(), p.deadline) if p.deadline is not None else None
        self.cancel(p, "aborted" if p.started is None else "canceled", at=at)
