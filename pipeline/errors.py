"""Errors that cross component boundaries.

    ConsumeError                  raised by consume_traces; flows back to the receiver
    ├── RefusedError              retryable: cannot take data now (queue full, memory,
    │                             shutting down) -> gRPC UNAVAILABLE + RetryInfo / HTTP 503
    └── PermanentError            never retry this data -> gRPC INTERNAL / HTTP 500
        └── InvalidDataError      the data itself is bad -> INVALID_ARGUMENT / HTTP 400
    ConfigError                   every problem found in the configuration, with paths

Whether an error is permanent is decided where it arises; receivers translate at the
edge (`pipeline.receivers.otlp`), exporters from the wire (`pipeline.exporters.helper`).
"""

from __future__ import annotations


class ConsumeError(Exception):
    """A consumer could not take a batch."""


class RefusedError(ConsumeError):
    """Retryable refusal; `retry_after` (seconds) is a hint for the client."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ConsumeError):
    """The data will never be accepted; retrying it is pointless."""


class InvalidDataError(PermanentError):
    """The data is malformed."""


class ConfigError(Exception):
    """Invalid configuration: one message per problem, each starting with its path."""

    def __init__(self, errors: list[str], warnings: list[str] | None = None) -> None:
        self.errors = list(errors)
        # what was accepted with a warning (an unset variable, settings for other
        # signals): shown with the errors, since it may explain them
        self.warnings = list(warnings or ())
        super().__init__(self.render())

    def render(self) -> str:
        n = len(self.errors)
        head = f"invalid configuration ({n} error{'s' if n != 1 else ''}):"
        lines = [head, *(f"  {e}" for e in self.errors)]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)
