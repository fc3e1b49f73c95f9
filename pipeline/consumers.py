"""Consumer plumbing: fan-out to several consumers. (How a processor is written, with
metrics, lifecycle and forwarding: `pipeline.processorhelper`.)"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.component import TracesConsumer
from pipeline.errors import RefusedError
from pipeline.pdata import Traces


class FanOut:
    """Sends each batch to several consumers. Consumers that mutate data get a copy,
    except that the last of them gets the original when no read-only consumer shares it.
    Every consumer is tried; the first error (a retryable one if any) is raised after."""

    def __init__(self, consumers: Sequence[TracesConsumer]) -> None:
        self._readonly = [c for c in consumers if not c.mutates_data]
        self._mutating = [c for c in consumers if c.mutates_data]
        self.mutates_data = False  # it copies for those that mutate

    async def consume_traces(self, traces: Traces) -> None:
        errors: list[BaseException] = []
        last = len(self._mutating) - 1
        for i, c in enumerate(self._mutating):
            batch = traces if (i == last and not self._readonly) else traces.copy()
            try:
                await c.consume_traces(batch)
            except Exception as exc:
                errors.append(exc)
        for c in self._readonly:
            try:
                await c.consume_traces(traces)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise next((e for e in errors if isinstance(e, RefusedError)), errors[0])


def fanout(consumers: Sequence[TracesConsumer]) -> TracesConsumer:
    return consumers[0] if len(consumers) == 1 else FanOut(consumers)
