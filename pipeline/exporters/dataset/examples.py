"""From a classified trace to training examples: which calls, which messages, who served
each assistant turn, and what a fallback changes.

The calls of a trace are its successful logical LLM calls as the GenAI index sees them
(`processors.genai`: after `build_chains`, a record with `logical` and `final_ok`; nested
attempts and the second span of a double-instrumented call are not calls of their own).
A call's content is read from its span (`processors.genai.content`); a gateway span
without content takes that of the last successful call span under it.

- `per: call`: one example per call: its input, then its first output message.
- `per: conversation`: one example per conversation: a call whose answer is in a later
  call's input, where its own input ended, is part of that later call's conversation; the
  calls that are in no later call's input each give one example. Found from the last call
  back (`drafts`), reading each call's answer alone (`read_head`) and each conversation's
  input once, from its last call: a call's span carries the whole conversation so far, so
  reading every call's input would cost the square of the conversation's length.

Each assistant message of an example is attributed to the call that produced it: the
example's own call for its output, and for an assistant message at position k of its
input, the latest earlier call that answered with that message (and whose input may end
at k). Unattributed turns (history from outside the trace) have no provider or model.

Fallbacks: the first assistant turn produced by a call whose logical call fell back, and
every assistant turn after it, are "after a fallback": `on_fallback: drop` cuts the
example before the first of them (an example left without an assistant turn is skipped,
`fallback`); `weight0` keeps them with `"weight": 0` (and every other assistant turn
`"weight": 1`).

`served_models`: every trained assistant turn (weight 1) must have been served by one of
these (normalised models; an unattributed turn fails).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from processors.genai import CALL_ROLES, HTTP, SpanRecord
from processors.genai.content import (
    CallContent,
    Head,
    Message,
    has_content,
    read_call,
    read_head,
)

__all__ = [
    "Call",
    "Draft",
    "Selection",
    "Turn",
    "calls_of",
    "drafts",
    "message_key",
]


class Turn(NamedTuple):
    """Who produced one assistant message of an example."""

    span_id: bytes  # b"": not attributed
    provider: str
    model: str
    fallback: bool  # the call that produced it fell back


class Call:
    """A successful logical call: who served it, and the span its content is on. Its head
    (`read_head`: its answer, how long its input is) is read when first asked for."""

    __slots__ = (
        "_head",
        "_read",
        "b0",
        "b1",
        "fallback",
        "model",
        "provider",
        "raw",
        "span_id",
        "start",
    )

    def __init__(
        self,
        span_id: bytes,
        start: int,
        provider: str,
        model: str,
        fallback: bool,
        raw: bytes,
        b0: int,
        b1: int,
    ) -> None:
        self.span_id = span_id
        self.start = start
        self.provider = provider
        self.model = model
        self.fallback = fallback
        self.raw = raw  # the span the content is on
        self.b0 = b0
        self.b1 = b1
        self._head: Head | None = None
        self._read = False

    @property
    def head(self) -> Head | None:
        if not self._read:
            self._read = True
            self._head = read_head(self.raw, self.b0, self.b1)
        return self._head

    def known(self, head: Head) -> None:
        """The head, from the call's whole content read for another reason."""
        self._head, self._read = head, True


@dataclass(frozen=True)
class Selection:
    """The options that shape examples (`DatasetConfig`'s)."""

    per: str = "conversation"
    on_fallback: str = "drop"
    served_models: frozenset[str] = frozenset()


@dataclass
class Draft:
    """An example before formatting: messages, tools, and who served each assistant turn
    (one `Turn` per assistant message, in order), with the weight of each."""

    messages: list[Message]
    tools: list[dict[str, Any]]
    turns: list[Turn]
    weights: list[int] | None  # per assistant message (None: no weights)
    span_ids: list[bytes]  # calls whose content the example holds, oldest first
    b0: int
    skip: str = ""  # why it is not written ("" : it is)


def message_key(m: Message) -> tuple[Any, ...]:
    """What makes two messages the same turn. Arguments are compared as text: a call's
    answer and the same turn in the next call's input are written by one instrumentation
    (a structured value is serialised the same way both times)."""
    return (m.role, m.content or "", m.tool_calls, m.tool_call_id)


# -- the calls of a trace -----------------------------------------------------------------------

# (record) -> (provider, model, fallback fired) as written on the span, or None to use the
# index's own results
ServedReader = Callable[[SpanRecord], tuple[str, str, bool] | None]


def _source(rec: SpanRecord) -> SpanRecord | None:
    """The span the call's content is on: its own, or the last successful call span under
    it that has some (a gateway's); None: no content anywhere."""
    if has_content(rec.raw, rec.b0, rec.b1):
        return rec
    if not rec.children:
        return None
    inner: list[SpanRecord] = []
    stack = list(rec.children)
    while stack:
        r = stack.pop()
        if r.role in CALL_ROLES and r.ok:
            inner.append(r)
        if r.children and r.role in (*CALL_ROLES, HTTP):
            stack.extend(r.children)
    for r in sorted(inner, key=lambda r: r.start, reverse=True):
        if has_content(r.raw, r.b0, r.b1):
            return r
    return None


def calls_of(
    records: Iterable[SpanRecord], served: ServedReader | None = None
) -> tuple[list[Call], int]:
    """The trace's successful logical calls with content, by start time, and how many had
    none (`no_content`). Nothing of the content is read here."""
    out: list[Call] = []
    missing = 0
    for rec in records:
        if not rec.logical or not rec.final_ok or rec.duplicate:
            continue
        src = _source(rec)
        if src is None:
            missing += 1
            continue
        got = served(rec) if served is not None else None
        provider, model, fb = (
            got if got is not None else (rec.served_provider, rec.served_model, rec.fallback_fired)
        )
        out.append(Call(rec.span_id, rec.start, provider, model, fb, src.raw, src.b0, src.b1))
    out.sort(key=lambda c: c.start)
    return out, missing


# -- examples -----------------------------------------------------------------------------------


def drafts(calls: list[Call], sel: Selection) -> tuple[list[Draft], int]:
    """The trace's examples (see the module docstring), those to skip carrying `skip`; and
    how many calls had no content after all (`no_content`).

    Per conversation, from the last call back: a call whose answer is in the input of a
    conversation already read (where its own input may end: not before as many messages
    as its input has, when that is known) belongs to it, and takes that place; any other
    call ends a conversation of its own, and only then is its input read. So each input
    is read once per conversation, not once per call; a call's answer alone is read only
    when a conversation read before may hold it."""
    out: list[Draft] = []
    missing = 0
    chosen: list[tuple[Call, CallContent | None]] = []
    if sel.per == "call":
        for c in calls:
            content = read_call(c.raw, c.b0, c.b1)
            if content is not None and content.output:
                c.known(Head(content.output[0], len(content.input)))
            chosen.append((c, content))
    else:
        # assistant messages of the conversations read: key -> positions
        seen: dict[tuple[Any, ...], list[int]] = {}
        for c in reversed(calls):
            head = c.head if seen else None
            if head is not None:
                places = seen.get(message_key(head.output))
                fit = [k for k in places if k >= head.inputs] if places else None
                if places and fit:  # the latest place left: calls are taken latest first
                    places.remove(max(fit))
                    continue
            content = read_call(c.raw, c.b0, c.b1)
            chosen.append((c, content))
            if content is not None:
                for k, m in enumerate(content.input):
                    if m.role == "assistant":
                        seen.setdefault(message_key(m), []).append(k)
        chosen.reverse()
    by_head: dict[tuple[Any, ...], list[Call]] = {}
    for c in calls:
        if c._read and c._head is not None:
            by_head.setdefault(message_key(c._head.output), []).append(c)
    for c, content in chosen:
        if content is None or not content.input or not content.output:
            missing += 1
            continue
        out.append(_draft(c, content, by_head, sel))
    return out, missing


def _draft(
    call: Call,
    content: CallContent,
    by_head: dict[tuple[Any, ...], list[Call]],
    sel: Selection,
) -> Draft:
    messages = [*content.input, content.output[0]]
    turns: list[Turn] = []
    used: set[bytes] = set()
    last = len(messages) - 1
    # latest first: each assistant message is the answer of the latest call before the
    # example's own that answered with it (and whose input may end there), not taken yet
    for k in range(last, -1, -1):
        m = messages[k]
        if m.role != "assistant":
            continue
        src: Call | None = call if k == last else None
        if src is None:
            for c in reversed(by_head.get(message_key(m), ())):
                h = c._head
                if (
                    c.start < call.start
                    and h is not None
                    and h.inputs <= k
                    and c.span_id not in used
                ):
                    src = c
                    break
        if src is None:
            turns.append(Turn(b"", "", "", False))
        else:
            used.add(src.span_id)
            turns.append(Turn(src.span_id, src.provider, src.model, src.fallback))
    turns.reverse()
    span_ids: list[bytes] = []
    for t in turns:
        if t.span_id and t.span_id not in span_ids:
            span_ids.append(t.span_id)
    d = Draft(messages, content.tools, turns, None, span_ids, call.b0)
    _fallback(d, sel)
    if not d.skip and sel.served_models:
        weights = d.weights or [1] * len(d.turns)
        if any(
            w and t.model not in sel.served_models for t, w in zip(d.turns, weights, strict=True)
        ):
            d.skip = "served_model"
    return d


def _fallback(d: Draft, sel: Selection) -> None:
    first = next((i for i, t in enumerate(d.turns) if t.fallback), None)
    if first is None:
        return
    if sel.on_fallback == "weight0":
        d.weights = [1 if i < first else 0 for i in range(len(d.turns))]
        return
    # drop: cut before the first assistant message after the fallback, then back to the
    # last assistant message left
    seen = -1
    cut = len(d.messages)
    for k, m in enumerate(d.messages):
        if m.role == "assistant":
            seen += 1
            if seen == first:
                cut = k
                break
    kept = d.messages[:cut]
    while kept and kept[-1].role != "assistant":
        kept.pop()
    if not kept:
        d.skip = "fallback"
        return
    n_turns = sum(1 for m in kept if m.role == "assistant")
    d.messages = kept
    d.turns = d.turns[:n_turns]
    keep_ids = {t.span_id for t in d.turns}
    d.span_ids = [s for s in d.span_ids if s in keep_ids]
