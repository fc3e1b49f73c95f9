"""`forward` connector: the end of one pipeline and the start of others (every pipeline
that lists it as a receiver gets each batch)."""

from __future__ import annotations

from pipeline.component import ConnectorFactory, Host, Settings, TracesConsumer
from pipeline.configtypes import Config
from pipeline.consumers import fanout
from pipeline.pdata import Traces


class ForwardConfig(Config):
    pass


class Forward:
    def __init__(
        self, settings: Settings, cfg: ForwardConfig, routes: dict[str, TracesConsumer]
    ) -> None:
        self._next = fanout(list(routes.values()))
        self.mutates_data = self._next.mutates_data

    async def start(self, host: Host) -> None:
        pass

    async def consume_traces(self, traces: Traces) -> None:
        await self._next.consume_traces(traces)

    async def shutdown(self) -> None:
        pass


factory = ConnectorFactory(
    type="forward",
    config_type=ForwardConfig,
    create=Forward,
    stability="beta",
    description="joins pipelines: exporter in one, receiver in others",
)
