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

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec

from processors.genai import CALL_ROLES, HTTP, SpanRecord
from processors.genai.content import (
    CallContent,
    Head,
    Message,
    Where,
    answer_region,
    read_call,
    read_head,
    where,
)

_encode = msgspec.json.Encoder().encode
_WALKED: Final = frozenset((*CALL_ROLES, HTTP))  # what a call's content may be under

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
        "region",
        "span_id",
        "start",
        "w",
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
        w: Where,
    ) -> None:
        self.span_id = span_id
        self.start = start
        self.provider = provider
        self.model = model
        self.fallback = fallback
        self.raw = raw  # the span the content is on
        self.b0 = b0
        self.b1 = b1
        self.w = w  # where its content is (`where`)
        self.region = answer_region(w)  # where its answer is
        self._head: Head | None = None
        self._read = False

    @property
    def head(self) -> Head | None:
        if not self._read:
            self._read = True
            self._head = read_head(self.raw, self.b0, self.b1, self.w)
        return self._head

    def content(self) -> CallContent | None:
        return read_call(self.raw, self.b0, self.b1, self.w)

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


def _content_at(rec: SpanRecord) -> Where | None:
    """Where the span's content is (`where`); None: it has none."""
    w = where(rec.raw, rec.b0, rec.b1)
    return w if any(w) else None


def _source(rec: SpanRecord) -> tuple[SpanRecord, Where] | None:
    """The span the call's content is on, and where that is: its own span, or the last
    successful call span under it that has some (a gateway's); None: no content
    anywhere."""
    got = _content_at(rec)
    if got is not None:
        return rec, got
    if not rec.children:
        return None
    inner: list[SpanRecord] = []
    stack = list(rec.children)
    while stack:
        r = stack.pop()
        if r.role in CALL_ROLES and r.ok:
            inner.append(r)
        if r.children and r.role in _WALKED:
            stack.extend(r.children)
    for r in sorted(inner, key=lambda r: r.start, reverse=True):
        got = _content_at(r)
        if got is not None:
            return r, got
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
        found = _source(rec)
        if found is None:
            missing += 1
            continue
        src, w = found
        got = served(rec) if served is not None else None
        provider, model, fb = (
            got if got is not None else (rec.served_provider, rec.served_model, rec.fallback_fired)
        )
        out.append(Call(rec.span_id, rec.start, provider, model, fb, src.raw, src.b0, src.b1, w))
    out.sort(key=lambda c: c.start)
    return out, missing


# -- examples -----------------------------------------------------------------------------------


def _needles(m: Message) -> list[list[bytes]] | None:
    """What must be in a call's answer for `m` to be it: its tool call ids (all), or its
    text as the encodings write it (any of them). None: nothing telling enough (a short
    text: its answer is read instead)."""
    if m.tool_calls:
        ids = [c.id.encode() for c in m.tool_calls]
        return [[i] for i in ids] if all(len(i) >= 6 for i in ids) else None
    text = m.content or ""
    if len(text) < 12:
        return None
    t = text[:200]
    forms = {t.encode(), _encode(t)[1:-1], json.dumps(t)[1:-1].encode()}
    return [sorted(forms)]


def _has(c: Call, needles: list[list[bytes]]) -> bool:
    region = c.region
    if region is None:
        return False
    a, b = region
    raw = c.raw
    return all(any(raw.find(n, a, b) >= 0 for n in alts) for alts in needles)


def drafts(calls: list[Call], sel: Selection) -> tuple[list[Draft], int]:
    """The trace's examples (see the module docstring), those to skip carrying `skip`; and
    how many calls had no content after all (`no_content`).

    Per conversation, from the last call back: a call whose answer is an assistant turn, not
    yet placed, of a conversation already read belongs to it, and takes that place (the
    latest such turn: calls are taken latest first); any other call ends a conversation of
    its own, and only then is its input read. So each input is read once per conversation,
    not once per call. Whether a turn is a call's answer is seen without reading the
    answer where possible: the turn's tool call ids, or its text, are in the bytes that
    hold the call's answer (`answer_region`); else the answer is read (`read_head`) and
    compared, and the turn must be where the call's input may end."""
    out: list[Draft] = []
    missing = 0
    if sel.per == "call":
        chosen: list[tuple[Call, CallContent | None]] = []
        for c in calls:
            content = c.content()
            if content is not None and content.output:
                c.known(Head(content.output[0], len(content.input)))
            chosen.append((c, content))
        by_head: dict[tuple[Any, ...], list[Call]] = {}
        for c in calls:
            if c._read and c._head is not None:
                by_head.setdefault(message_key(c._head.output), []).append(c)
        for c, content in chosen:
            if content is None or not content.input or not content.output:
                missing += 1
                continue
            placed = _placed_by_head(c, content, by_head)
            out.append(_draft(c, content, placed, sel))
        return out, missing
    convs: list[tuple[Call, CallContent | None]] = []
    # assistant turns of the conversations read, not placed yet: (conversation, position,
    # message, needles), latest first
    open_: list[tuple[int, int, Message, list[list[bytes]] | None]] = []
    places: dict[tuple[int, int], Call] = {}
    for c in reversed(calls):
        spot = None
        if open_:
            for cand in open_:
                if cand[3] is not None and _has(c, cand[3]):
                    spot = cand
                    break
            if spot is None:
                head = c.head
                if head is not None:
                    key = message_key(head.output)
                    for cand in open_:
                        if cand[1] >= head.inputs and message_key(cand[2]) == key:
                            spot = cand
                            break
        if spot is not None:
            open_.remove(spot)
            places[(spot[0], spot[1])] = c
            continue
        content = c.content()
        ci = len(convs)
        convs.append((c, content))
        if content is not None:
            turns = [
                (ci, k, m, _needles(m))
                for k, m in enumerate(content.input)
                if m.role == "assistant"
            ]
            open_ = sorted(open_ + turns, key=lambda t: -t[1])
    for ci in range(len(convs) - 1, -1, -1):
        c, content = convs[ci]
        if content is None or not content.input or not content.output:
            missing += 1
            continue
        placed = {k: call for (i, k), call in places.items() if i == ci}
        out.append(_draft(c, content, placed, sel))
    return out, missing


def _placed_by_head(
    call: Call, content: CallContent, by_head: dict[tuple[Any, ...], list[Call]]
) -> dict[int, Call]:
    """Per call: each assistant turn of its input, the latest earlier call that answered
    with it (and whose input may end there)."""
    placed: dict[int, Call] = {}
    used: set[bytes] = set()
    for k in range(len(content.input) - 1, -1, -1):
        m = content.input[k]
        if m.role != "assistant":
            continue
        for c in reversed(by_head.get(message_key(m), ())):
            h = c._head
            if c.start < call.start and h is not None and h.inputs <= k and c.span_id not in used:
                used.add(c.span_id)
                placed[k] = c
                break
    return placed


def _draft(call: Call, content: CallContent, placed: dict[int, Call], sel: Selection) -> Draft:
    messages = [*content.input, content.output[0]]
    turns: list[Turn] = []
    last = len(messages) - 1
    for k, m in enumerate(messages):
        if m.role != "assistant":
            continue
        src = call if k == last else placed.get(k)
        if src is None:
            turns.append(Turn(b"", "", "", False))
        else:
            turns.append(Turn(src.span_id, src.provider, src.model, src.fallback))
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
