"""The component model, after the OTel Collector's.

A component has two lifecycle methods, `start(host)` and `shutdown()`; a consumer has one
more, `consume_traces(traces)`. The call is awaited: an exception raised by it travels back
to the receiver, and that is the whole back-pressure path. A factory is data: the type
name, the config type (its defaults are the default config), and a create function.

Rules every component keeps:
- `shutdown()` without `start()`, or twice, is harmless.
- A consumer that changes the batches it receives declares `mutates_data = True`; the
  fan-out gives it a copy when others read the same batch.
- A consumer that keeps a batch after `consume_traces` returns calls `traces.retain()`,
  and `traces.release()` when done with it (see `pipeline.pdata.Delivery`).
"""

from __future__ import annotations

import builtins
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from pipeline.configtypes import Config
from pipeline.pdata import Traces

if TYPE_CHECKING:
    from pipeline.telemetry import Telemetry

Kind = Literal["receiver", "processor", "exporter", "extension", "connector"]
KINDS: tuple[Kind, ...] = ("receiver", "processor", "exporter", "extension", "connector")
Stability = Literal["development", "alpha", "beta", "stable"]

_TYPE = re.compile(r"^[a-zA-Z][0-9a-zA-Z_]{0,62}$")
_NAME = re.compile(r"^[^\s\x00-\x1f]+$")


@dataclass(frozen=True, order=True)
class ComponentID:
    """`type[/name]`, e.g. `otlp` or `batch/large`."""

    type: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> ComponentID:
        type_, sep, name = str(text).strip().partition("/")
        if not _TYPE.match(type_):
            raise ValueError(
                f"invalid component type {type_!r} in id {text!r}: "
                "want a letter then letters, digits or '_'"
            )
        if sep and (not name or not _NAME.match(name)):
            raise ValueError(f"invalid component name in id {text!r}")
        return cls(type_, name)

    def __str__(self) -> str:
        return f"{self.type}/{self.name}" if self.name else self.type


class Host(Protocol):
    """What a component may ask of the running service."""

    # loop time by which a shutdown in progress must finish (None: not stopping/no limit)
    deadline: float | None

    def extension(self, id: ComponentID) -> Any: ...

    def report_fatal_error(self, error: BaseException) -> None: ...

    def is_ready(self) -> bool: ...

    def announce(self, what: str) -> None:
        """Report an endpoint the component listens on (printed at start)."""


@dataclass(frozen=True)
class Settings:
    id: ComponentID
    kind: Kind
    telemetry: Telemetry
    logger: logging.Logger
    pipeline: str | None = None  # set for processors, which are created per pipeline


@runtime_checkable
class Component(Protocol):
    async def start(self, host: Host) -> None: ...

    async def shutdown(self) -> None: ...


@runtime_checkable
class TracesConsumer(Protocol):
    mutates_data: bool

    async def consume_traces(self, traces: Traces) -> None: ...


class Processor(Component, TracesConsumer, Protocol):
    pass


class Exporter(Component, TracesConsumer, Protocol):
    pass


class Connector(Component, TracesConsumer, Protocol):
    """An exporter in one pipeline that is a receiver in others."""


C = TypeVar("C", bound=Config)
C_contra = TypeVar("C_contra", bound=Config, contravariant=True)


@dataclass(frozen=True)
class ReceiverFactory(Generic[C]):
    type: str
    config_type: builtins.type[C]
    create: Callable[[Settings, C, TracesConsumer], Component]
    stability: Stability = "beta"
    aliases: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ProcessorFactory(Generic[C]):
    type: str
    config_type: builtins.type[C]
    create: Callable[[Settings, C, TracesConsumer], Processor]
    stability: Stability = "beta"
    aliases: tuple[str, ...] = ()
    description: str = ""
    # processor types that must come earlier in the same pipeline, and why
    requires_before: tuple[str, ...] = ()
    requires_reason: str = ""


@dataclass(frozen=True)
class ExporterFactory(Generic[C]):
    type: str
    config_type: builtins.type[C]
    create: Callable[[Settings, C], Exporter]
    stability: Stability = "beta"
    aliases: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ExtensionFactory(Generic[C]):
    type: str
    config_type: builtins.type[C]
    create: Callable[[Settings, C], Component]
    stability: Stability = "beta"
    aliases: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ConnectorFactory(Generic[C]):
    """`create` receives a router: pipeline id -> consumer for the pipelines it feeds."""

    type: str
    config_type: builtins.type[C]
    create: Callable[[Settings, C, dict[str, TracesConsumer]], Connector]
    stability: Stability = "beta"
    aliases: tuple[str, ...] = ()
    description: str = ""


AnyFactory = (
    ReceiverFactory[Any]
    | ProcessorFactory[Any]
    | ExporterFactory[Any]
    | ExtensionFactory[Any]
    | ConnectorFactory[Any]
)


@dataclass
class Registry:
    """Factories by kind and type (aliases included). Built once, explicitly."""

    receivers: dict[str, ReceiverFactory[Any]] = field(default_factory=dict)
    processors: dict[str, ProcessorFactory[Any]] = field(default_factory=dict)
    exporters: dict[str, ExporterFactory[Any]] = field(default_factory=dict)
    extensions: dict[str, ExtensionFactory[Any]] = field(default_factory=dict)
    connectors: dict[str, ConnectorFactory[Any]] = field(default_factory=dict)

    def table(self, kind: Kind) -> dict[str, Any]:
        tables: dict[str, dict[str, Any]] = {
            "receiver": self.receivers,
            "processor": self.processors,
            "exporter": self.exporters,
            "extension": self.extensions,
            "connector": self.connectors,
        }
        return tables[kind]

    def add(self, kind: Kind, factory: AnyFactory) -> None:
        table = self.table(kind)
        for name in (factory.type, *factory.aliases):
            if name in table:
                raise ValueError(f"duplicate {kind} type {name!r}")
            table[name] = factory

    def types(self, kind: Kind) -> list[str]:
        """Canonical type names (no aliases), sorted."""
        return sorted({f.type for f in self.table(kind).values()})
