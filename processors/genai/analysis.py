"""The three analyses over a batch's span records, and per-trace facts.

- `reconcile`: requested/served provider and model of every LLM call, the evidence that
  decided, and whether served differs from requested.
- `tag_cache`: gateway/semantic cache hits (not provider prompt caching).
- `build_chains`: the attempts of each logical call (retries, fallbacks) and tool retries.

Each runs at most once per index (memoised on the index); all are pure functions of the
records, except the optional cross-batch response-id memory of `tag_cache`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

from pipeline import wirescan
from pipeline.wirescan import SpanInfo
from processors.genai.index import (
    GATEWAY,
    HTTP,
    LLM,
    TOOL,
    Keys,
    SpanRecord,
    build_records,
    is_call,
)
from processors.genai.models import compatible, model_family, normalize_model

__all__ = ["Attempt", "GenAIIndex", "ResponseIdMemory", "TraceFacts"]

# evidence, strongest first
EVIDENCE: Final = ("gateway", "http_host", "response_model", "span_attribute", "model_family")


class Attempt:
    """One attempt of a logical call (a native class: made for every call span)."""

    __slots__ = ("model", "ok", "outcome", "provider", "record")

    def __init__(
        self, provider: str, model: str, ok: bool, outcome: str, record: SpanRecord | None
    ) -> None:
        self.provider = provider
        self.model = model  # normalised
        self.ok = ok
        self.outcome = outcome  # "ok" | "error:<type or status>"
        self.record = record

    def __repr__(self) -> str:
        return f"Attempt({self.provider!r}, {self.model!r}, {self.ok}, {self.outcome!r})"

    def with_target(self, provider: str, model: str) -> Attempt:
        return Attempt(provider, model, self.ok, self.outcome, self.record)

    def entry(self) -> str:
        key = (self.provider, self.model, self.outcome)
        got = _ENTRIES.get(key)
        if got is None:
            if len(_ENTRIES) > 10_000:
                _ENTRIES.clear()
            got = _ENTRIES[key] = (
                f"{self.provider or 'unknown'}/{self.model or 'unknown'}:{self.outcome}"
            )
        return got


_ENTRIES: Final[dict[tuple[str, str, str], str]] = {}


@dataclass
class TraceFacts:
    """What the enrichment found in one trace (for `cleanliness` and metrics)."""

    trace_id: bytes
    roots: list[SpanRecord] = field(default_factory=list)
    calls: list[SpanRecord] = field(default_factory=list)  # every LLM/gateway span
    logical_calls: list[SpanRecord] = field(default_factory=list)
    tools: list[SpanRecord] = field(default_factory=list)
    providers: set[str] = field(default_factory=set)  # served, by successful logical calls
    models: set[str] = field(default_factory=set)  # served, normalised
    fallback: bool = False
    llm_retry: bool = False
    tool_retry: bool = False
    cache_hit: bool = False
    provider_mismatch: bool = False
    # logical LLM calls and tool runs whose last attempt failed (swallowed if the run is ok)
    unrecovered: list[SpanRecord] = field(default_factory=list)
    # an agent/chain span (not the root) ended in ERROR and nothing after it recovered (no
    # successful logical call started after it ended): the run failed, whatever the root
    # span (an instrumentation's own root may stay OK) says
    failed_run: bool = False

    def reasons(self) -> list[str]:
        """The enrichment reasons, in the order of the cleanliness vocabulary."""
        out = []
        for name in ("fallback", "llm_retry", "tool_retry", "cache_hit", "provider_mismatch"):
            if getattr(self, name):
                out.append(name)
        return out


class ResponseIdMemory:
    """Response ids seen in earlier batches (a replayed id is a cache hit). Bounded LRU."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: OrderedDict[str, tuple[bytes, int]] = OrderedDict()

    def earlier(self, rid: str, key: bytes, start: int) -> bool:
        got = self._seen.get(rid)
        return got is not None and got[0] != key and got[1] <= start

    def add(self, rid: str, key: bytes, end: int) -> None:
        if rid in self._seen:
            return
        self._seen[rid] = (key, end)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)


def _start(r: SpanRecord) -> int:
    return r.start


class GenAIIndex:
    """The per-batch index; see `processors.genai`."""

    def __init__(self, raw: bytes, keys: Keys, spans: list[SpanInfo] | None = None) -> None:
        self.raw = raw  # the batch encoding the records' offsets refer to
        self.keys = keys
        built = build_records(raw, keys, wirescan.spans(raw) if spans is None else spans)
        self.records = built.records
        # freed by reference counting: `__del__` cuts their only cycles (parent/children)
        wirescan.untrack(self.records)
        self.by_key = built.by_key
        self.tool_spans = built.tool_spans
        self.failed_agents = built.failed_agents
        self._has_markers = built.has_markers
        self.calls = [r for r in self.records if is_call(r.role)]
        self.tools = [r for r in self.records if r.role == TOOL]
        self.roots = [r for r in self.records if r.is_root]
        self._reconciled = False
        self._cached = False
        self._chained = False
        self._attempts: dict[bytes, list[Attempt]] = {}
        self._facts: dict[bytes, TraceFacts] | None = None

    def __del__(self) -> None:
        # parent <-> children links are reference cycles: cut with the index, so that
        # reference counting frees the batch's records at once instead of the cyclic GC
        # walking them all (~2 us a span in a full collection)
        for rec in getattr(self, "records", ()):  # (none if building failed)
            if rec.children is not None:
                rec.children = None

    # -- reconciliation ------------------------------------------------------------------
    def reconcile(self) -> None:
        if self._reconciled:
            return
        self._reconciled = True
        for rec in self.calls:
            self._resolve(rec)

    def served_counts(self) -> tuple[dict[tuple[str, str], int], int]:
        """Call spans by the (provider, model) that served them, and how many of them were
        served by another provider or model than requested (after `reconcile`)."""
        self.reconcile()
        served: dict[tuple[str, str], int] = {}
        mismatches = 0
        for rec in self.calls:
            k = (rec.served_provider, rec.served_model)
            served[k] = served.get(k, 0) + 1
            if rec.mismatch:
                mismatches += 1
        return served, mismatches

    def _resolve(self, rec: SpanRecord) -> None:
        if rec.resolved:
            return
        rec.resolved = True
        req_model = rec.req_model
        fam_req = model_family(req_model) if req_model else ""
        rp = rec.provider_attr
        if rp and (not fam_req or compatible(fam_req, rp)):
            rec.req_provider = rp
        elif fam_req:
            # no claim, or a claim the model contradicts (an OpenAI SDK pointed at a gateway
            # for a Claude model says `openai`): the model's family is what was asked for
            rec.req_provider, rec.req_from_family = fam_req, True
        rec.req_model_n = normalize_model(req_model) if req_model else ""
        sp, sm, ev = "", "", ""
        if rec.gw_provider or rec.gw_model:
            ev = "gateway"
            sm = rec.gw_model or rec.resp_model or req_model
            sp = rec.gw_provider or self._provider_without_gateway(rec, sm)[0]
        else:
            inner = self._inner_calls(rec) if rec.children else None
            last = inner[-1] if inner else None
            if last is not None and last.error and rec.ok:
                # a failed attempt, then the answer from a request of the span's own
                # (PydanticAI's fallback: the last model's request is no span of its own)
                ok = [c for c in inner or () if not c.error]
                last = ok[-1] if ok else None
            if last is not None:
                self._resolve(last)
            if last is not None and last.served_provider:
                sp, sm = last.served_provider, last.served_model or rec.resp_model or req_model
                gw = last.role == GATEWAY or last.gw_attempt or bool(last.gw)
                ev = "gateway" if gw else last.evidence
            else:
                sm = (last.served_model if last is not None else "") or rec.resp_model or req_model
                sp, ev = self._provider_without_gateway(rec, sm)
        rec.served_provider = sp
        rec.served_model = normalize_model(sm) if sm else ""
        rec.evidence = ev
        rec.mismatch = self._mismatch(rec)

    def _provider_without_gateway(self, rec: SpanRecord, model: str) -> tuple[str, str]:
        host_p = self._innermost_ok_host(rec)
        if host_p:
            return host_p, "http_host"
        rp = rec.provider_attr
        if rec.resp_model:
            fam = model_family(rec.resp_model)
            if fam:
                return (rp if rp and compatible(fam, rp) else fam), "response_model"
        if rp:
            return rp, "span_attribute"
        fam = model_family(model) if model else ""
        if fam:
            return fam, "model_family"
        return "", ""

    def _innermost_ok_host(self, rec: SpanRecord) -> str:
        """Provider of the deepest successful HTTP client span under `rec` (or of `rec`'s own
        server.address when it has no HTTP children)."""
        hosts = self.keys.hosts
        if not rec.children:  # the common case: a leaf call
            host = rec.host
            return hosts.provider(host) if host and rec.ok else ""
        best, depth = "", -1
        stack: list[tuple[SpanRecord, int]] = [(rec, 0)]
        while stack:
            r, d = stack.pop()
            if r.role == HTTP and r.ok and r.host and d >= depth:
                p = hosts.provider(r.host)
                if p:
                    best, depth = p, d
            if r.children:
                stack.extend((c, d + 1) for c in r.children if c.role in (HTTP, LLM, GATEWAY))
        if not best and rec.host and rec.ok:
            best = hosts.provider(rec.host)
        return best

    @staticmethod
    def _mismatch(rec: SpanRecord) -> bool:
        rp, sp = rec.req_provider, rec.served_provider
        if rp and sp:
            if rec.req_from_family:
                if not compatible(rp, sp):
                    return True
            elif rp != sp:
                return True
        rm, sm = rec.req_model_n, rec.served_model
        return bool(rm and sm and rm != sm and _concrete(rec.req_model))

    def _inner_calls(self, rec: SpanRecord) -> list[SpanRecord]:
        """Call spans directly below `rec` (or below its HTTP children), by start time."""
        if not rec.children:
            return []
        out: list[SpanRecord] = []
        for ch in rec.children:
            if is_call(ch.role):
                out.append(ch)
            elif ch.role == HTTP and ch.children:
                out.extend(g for g in ch.children if is_call(g.role))
        if len(out) > 1:
            out.sort(key=_start)
        return out

    # -- cache ---------------------------------------------------------------------------
    def tag_cache(self, memory: ResponseIdMemory | None = None, zero_cost: bool = True) -> None:
        if self._cached:
            return
        self._cached = True
        self.reconcile()
        calls = sorted(self.calls, key=_start)
        first_end: dict[str, int] = {}
        for rec in calls:
            self._tag(rec, first_end, memory, zero_cost)
        # a framework's own cache: calls with no request under them, not told apart yet
        quiet = [
            r
            for r in calls
            if r.role == LLM
            and r.children is None
            and not (r.cache_hit or r.error or r.gw or r.cache_flag or r.http_status >= 400)
        ]
        if quiet:
            sent = self._sent_by_model(calls)
            for rec in quiet:
                self._framework_cache(rec, sent)
        if memory is not None:
            for rec in calls:
                if rec.resp_id and not rec.cache_hit:
                    memory.add(rec.resp_id, rec.key, rec.end)

    def _tag(
        self,
        rec: SpanRecord,
        first_end: dict[str, int],
        memory: ResponseIdMemory | None,
        zero_cost: bool,
    ) -> None:
        rid = rec.resp_id
        seen_before = False
        if rid:
            prev = first_end.get(rid)
            seen_before = prev is not None and prev <= rec.start
            if prev is None or rec.end < prev:
                first_end[rid] = rec.end
            if not seen_before and memory is not None:
                seen_before = memory.earlier(rid, rec.key, rec.start)
        if rec.cache_flag == 1:
            self._hit(rec, rec.cache_type or "unknown", rec.cache_src)
            return
        if rec.cache_flag == 2:
            return  # an explicit miss
        inner = self._inner_calls(rec)
        for g in inner:
            if g.cache_flag == 1 or (g.role == GATEWAY and self._short_circuit(g)):
                self._tag(g, first_end, None, zero_cost)
                if g.cache_hit:
                    self._hit(rec, g.cache_hit_type, g.cache_evidence)
                    return
        if rec.role == GATEWAY and self._short_circuit(rec):
            self._hit(rec, "unknown", "no_provider_call")
        elif seen_before:
            self._hit(rec, "exact", "response_id_seen")
        elif zero_cost and rec.cost == 0.0 and rec.tokens_in + rec.tokens_out > 0:
            self._hit(rec, "unknown", "zero_cost")

    def _sent_by_model(self, calls: list[SpanRecord]) -> dict[tuple[bytes, str], list[SpanRecord]]:
        """Per (trace, served model): its successful calls that sent a request (an HTTP
        span under them), by start time; the key (trace, "") for every trace that has
        such a call; (trace, "!"): the successful calls of the others."""
        out: dict[tuple[bytes, str], list[SpanRecord]] = {}
        for r in calls:
            if r.ok and self._sent(r):
                out.setdefault((r.trace_id, r.served_model), []).append(r)
                out.setdefault((r.trace_id, ""), [])
            elif not r.error:
                # calls of traces with no request at all, under (trace, "!"): the calls an
                # `unknown` is compared with
                out.setdefault((r.trace_id, "!"), []).append(r)
        return out

    @staticmethod
    def _sent(rec: SpanRecord) -> bool:
        """An HTTP request under the call (its own, or its inner SDK span's)."""
        if rec.n_http:
            return True
        return any(c.n_http for c in rec.children or () if is_call(c.role))

    def _framework_cache(
        self, rec: SpanRecord, sent: dict[tuple[bytes, str], list[SpanRecord]]
    ) -> None:
        """A framework's own LLM cache (LangChain `set_llm_cache`, ...): no marker. A
        successful call span with no request under it (no HTTP or call child, no gateway)
        that either took at most `_INSTANT_NS` or returned the token counts of an earlier
        call of the model, while the trace's other calls of that model did send one: a hit
        (`no_provider_call`). In a trace with no HTTP span at all nothing tells: evidence
        `unknown`, not a hit."""
        if rec.error or rec.children or rec.gw or rec.cache_flag or not rec.served_model:
            return
        quick = rec.end - rec.start <= _INSTANT_NS
        peers = sent.get((rec.trace_id, rec.served_model))
        if peers is None:
            if (rec.trace_id, "") not in sent and (
                quick or self._same_usage(rec, sent.get((rec.trace_id, "!"), []))
            ):
                rec.cache_evidence = "unknown"
            return
        if quick or self._same_usage(rec, peers):
            self._hit(rec, "exact", "no_provider_call")

    @staticmethod
    def _same_usage(rec: SpanRecord, peers: list[SpanRecord]) -> bool:
        """Token counts (> 0) equal to those of an earlier, finished call of the trace."""
        if rec.tokens_in <= 0 and rec.tokens_out <= 0:
            return False
        for p in peers:
            if (
                p is not rec
                and p.trace_id == rec.trace_id
                and p.end <= rec.start
                and p.served_model == rec.served_model
                and p.tokens_in == rec.tokens_in
                and p.tokens_out == rec.tokens_out
            ):
                return True
        return False

    @staticmethod
    def _short_circuit(g: SpanRecord) -> bool:
        """A gateway span that answered without calling a provider."""
        return g.ok and not any(c.role in (LLM, GATEWAY, HTTP) for c in g.children or ())

    @staticmethod
    def _hit(rec: SpanRecord, ctype: str, evidence: str) -> None:
        rec.cache_hit = True
        rec.cache_hit_type = ctype or "unknown"
        rec.cache_evidence = evidence

    # -- chains --------------------------------------------------------------------------
    def build_chains(self) -> None:
        if self._chained:
            return
        self._chained = True
        self.reconcile()
        groups: dict[bytes, list[SpanRecord]] = {}
        for rec in self.calls:
            if self._is_nested(rec):
                continue
            groups.setdefault(rec.parent_key or rec.key, []).append(rec)
        failed: list[list[SpanRecord]] = []  # runs whose last attempt failed
        for members in groups.values():
            if len(members) > 1:
                members.sort(key=_start)
                self._dedupe(members)
                members = [m for m in members if not m.duplicate]
            self._runs(members, failed)
        if failed:
            self._link_failed(failed)
        self._tool_runs()

    @staticmethod
    def _is_nested(rec: SpanRecord) -> bool:
        anc = rec.parent
        while anc is not None:
            if is_call(anc.role):
                return True
            if anc.role != HTTP:
                return False
            anc = anc.parent
        return False

    @staticmethod
    def _dedupe(members: list[SpanRecord]) -> None:
        """Two sibling spans for one call (an SDK that traces itself next to an
        instrumentation): overlapping, contained, same response id or model."""
        for i in range(1, len(members)):
            b = members[i]
            for a in members[:i]:
                if a.duplicate or b.start >= a.end or b.end > a.end:
                    continue
                if (a.resp_id and a.resp_id == b.resp_id) or (
                    not (a.resp_id and b.resp_id)
                    and a.served_model
                    and a.served_model == b.served_model
                ):
                    b.duplicate = True
                    break

    def _runs(self, members: list[SpanRecord], failed: list[list[SpanRecord]]) -> None:
        run: list[SpanRecord] = []
        for rec in members:
            atts = self.attempts(rec)
            rec.final_ok = atts[-1].ok if atts else rec.ok
            if run and not run[-1].final_ok and rec.start >= run[-1].end - _OVERLAP_NS:
                run.append(rec)
            else:
                if run:
                    self._close_run(run)
                run = [rec]
        if run:
            self._close_run(run)
            if not run[-1].final_ok:
                failed.append(run)  # the last under its parent: a later call may take over

    def _link_failed(self, failed: list[list[SpanRecord]]) -> None:
        """A logical call that failed for good, the last under its parent, then the next
        logical call of its trace (under another parent: the app caught the error and
        asked again, often through another agent run): one logical call, its attempts the
        failed run's then the next call's (a fallback when the target changed, else a
        retry)."""
        by_trace: dict[bytes, list[SpanRecord]] = {}
        for r in self.calls:
            if r.logical:
                by_trace.setdefault(r.trace_id, []).append(r)
        runs = {id(run[-1]): run for run in failed}
        for first in sorted(failed, key=lambda run: run[0].start):
            last = first[-1]
            run = runs[id(last)]  # with the earlier failed runs joined to it
            if not last.logical or last.final_ok:
                continue
            later = [
                r
                for r in by_trace.get(last.trace_id, ())
                if r is not last and r.start >= last.end - _OVERLAP_NS
            ]
            if not later:
                continue
            nxt = min(later, key=_start)
            joined = [*run, *runs.get(id(nxt), [nxt])]
            last.logical = False
            last.chain = None
            self._close_run(joined)
            runs[id(nxt)] = joined

    def _close_run(self, run: list[SpanRecord]) -> None:
        last = run[-1]
        if len(run) == 1 and not last.marked:
            only = self.attempts(last)
            if len(only) == 1:  # the common case: one call, one attempt
                a = only[0]
                last.logical = True
                last.chain = [a.entry()]
                last.attempt_count = 1
                last.retry_count = 0
                last.fallback_fired = False
                last.final_ok = a.ok
                return
        for r in run[:-1]:
            r.superseded = True
        atts: list[Attempt] = []
        for r in run:
            atts.extend(self.attempts(r))
        retries, fallbacks = _count(atts)
        # attempts that markers report but no span shows (a sidecar that sees one span;
        # LiteLLM legacy and Portkey collapse attempts; an SDK span with resend_count)
        want_r = want_f = 0
        if any(r.marked for r in run):
            marked = [c for r in run for c in self._subtree(r)]
            want_r = max(max(c.retries_marker for c in marked), max(c.resend for c in marked))
            want_f = max(c.fallback_marker for c in marked)
        if atts and (want_r > retries or want_f > fallbacks):
            final = atts[-1]
            prefix: list[Attempt] = []
            if want_f > fallbacks:
                first = run[0]
                asked = Attempt(first.req_provider, first.req_model_n, False, _UNK, None)
                if _same(asked, final):
                    asked = Attempt("", "", False, _UNK, None)  # the original is not known
                prefix.append(asked)
                prefix.extend(
                    Attempt("", "", False, _UNK, None) for _ in range(want_f - fallbacks - 1)
                )
            again = [
                Attempt(final.provider, final.model, False, _UNK, None)
                for _ in range(max(0, want_r - retries))
            ]
            atts = prefix + atts[:-1] + again + [final]
            retries, fallbacks = max(retries, want_r), max(fallbacks, want_f)
        last.logical = True
        last.chain = [a.entry() for a in atts]
        last.attempt_count = len(atts)
        last.retry_count = retries
        last.fallback_fired = fallbacks > 0 or want_f > 0
        last.final_ok = atts[-1].ok if atts else last.ok

    @staticmethod
    def _subtree(rec: SpanRecord) -> list[SpanRecord]:
        """`rec` and the call and HTTP spans below it."""
        out: list[SpanRecord] = []
        stack = [rec]
        while stack:
            r = stack.pop()
            out.append(r)
            if r.children:
                stack.extend(c for c in r.children if c.role in (LLM, GATEWAY, HTTP))
        return out

    def attempts(self, rec: SpanRecord) -> list[Attempt]:
        """The attempts of one call span, in order (docs/genai.md#fallback_chain)."""
        got = self._attempts.get(rec.key)
        if got is not None:
            return got
        self._resolve(rec)
        if not rec.children:  # the common case: one span, one attempt (not kept: cheaper
            return [self._leaf(rec)]  # to make again than to hold for the GC to walk)
        out: list[Attempt] = []
        calls: list[SpanRecord] = []
        https: list[SpanRecord] = []
        for c in rec.children or ():
            r = c.role
            if r == HTTP:
                https.append(c)
            elif is_call(r):
                calls.append(c)
        if len(calls) > 1:
            calls.sort(key=_start)
        if len(https) > 1:
            https.sort(key=_start)
        if rec.role == GATEWAY:
            if calls:
                for c in calls:
                    out.extend(self.attempts(c))
            else:
                out.extend(self._http_attempt(h, rec) for h in https)
            if not out:
                out.append(self._leaf(rec))  # answered without a provider call (cache)
        elif https:
            if calls:  # attempt spans and requests side by side (PydanticAI's fallback)
                https = sorted([*https, *calls], key=_start)
            for h in https:
                if h.role != HTTP:
                    out.extend(self.attempts(h))
                    continue
                sub = [g for g in h.children if is_call(g.role)] if h.children else None
                if sub:
                    sub.sort(key=_start)
                    for g in sub:
                        out.extend(self.attempts(g))
                else:
                    out.append(self._http_attempt(h, rec))
        elif calls:
            for c in calls:
                out.extend(self.attempts(c))
        else:
            out.append(self._leaf(rec))
        if any(not a.provider or not a.model for a in out):
            p = rec.served_provider or rec.req_provider
            m = rec.served_model or rec.req_model_n
            out = [a.with_target(a.provider or p, a.model or m) for a in out]
        self._attempts[rec.key] = out
        return out

    def _http_attempt(self, h: SpanRecord, rec: SpanRecord) -> Attempt:
        p = self.keys.hosts.provider(h.host) if h.host else ""
        ok = h.ok
        return Attempt(
            p or rec.served_provider or rec.req_provider,
            rec.served_model or rec.req_model_n,
            ok,
            "ok" if ok else "error:" + _error_of(h),
            h,
        )

    @staticmethod
    def _leaf(rec: SpanRecord) -> Attempt:
        ok = rec.ok
        return Attempt(
            rec.served_provider or rec.req_provider,
            rec.served_model or rec.req_model_n,
            ok,
            "ok" if ok else "error:" + _error_of(rec),
            rec,
        )

    def _tool_runs(self) -> None:
        """Runs of one tool in one trace: a run that failed, then ran again later (after an
        LLM turn that saw the error, possibly under another parent of the same agent run),
        is one tool call retried."""
        groups: dict[tuple[bytes, str], list[SpanRecord]] = {}
        for t in self.tools:
            groups.setdefault((t.trace_id, t.tool_name), []).append(t)
        for members in groups.values():
            if len(members) > 1:
                members.sort(key=_start)
            run: list[SpanRecord] = []
            for t in members:
                prev = run[-1] if run else None
                if prev is not None and prev.error and t.start >= prev.end - _OVERLAP_NS:
                    run.append(t)
                else:
                    if run:
                        _close_tool_run(run)
                    run = [t]
            if run:
                _close_tool_run(run)

    # -- per trace -------------------------------------------------------------------------
    def facts(self) -> dict[bytes, TraceFacts]:
        """Per-trace facts (runs all three analyses first; in-batch response ids only unless
        `tag_cache` already ran with a memory)."""
        if self._facts is not None:
            return self._facts
        self.reconcile()
        self.tag_cache()
        self.build_chains()
        out: dict[bytes, TraceFacts] = {}

        def get(tid: bytes) -> TraceFacts:
            f = out.get(tid)
            if f is None:
                f = out[tid] = TraceFacts(tid)
            return f

        for r in self.roots:
            get(r.trace_id).roots.append(r)
        for r in self.calls:
            f = get(r.trace_id)
            f.calls.append(r)
            f.cache_hit = f.cache_hit or r.cache_hit
            f.provider_mismatch = f.provider_mismatch or r.mismatch
            if r.logical:
                f.logical_calls.append(r)
                f.fallback = f.fallback or r.fallback_fired
                f.llm_retry = f.llm_retry or r.retry_count > 0
                if r.final_ok:
                    if r.served_provider:
                        f.providers.add(r.served_provider)
                    if r.served_model:
                        f.models.add(r.served_model)
                else:
                    f.unrecovered.append(r)
        for t in self.tools:
            f = get(t.trace_id)
            f.tools.append(t)
            f.tool_retry = f.tool_retry or t.tool_retries > 0
            if not t.superseded and t.error:
                f.unrecovered.append(t)
        for a in self.failed_agents:
            f = get(a.trace_id)
            if not f.failed_run and not any(
                c.final_ok and c.start >= a.end - _OVERLAP_NS for c in f.logical_calls
            ):
                f.failed_run = True
        self._facts = out
        return out


_OVERLAP_NS: Final = 1_000_000  # clocks of sibling spans may disagree by this much
_INSTANT_NS: Final = 5_000_000  # a call answered this fast sent no request (a local cache)


def _close_tool_run(run: list[SpanRecord]) -> None:
    for t in run[:-1]:
        t.superseded = True
    last = run[-1]
    last.tool_retries = len(run) - 1
    last.final_ok = not last.error


_UNK: Final = "error:unknown"


def _count(atts: list[Attempt]) -> tuple[int, int]:
    """(retries, fallbacks): an attempt after a failed one is a retry when it targets the
    same provider and model, else a fallback."""
    retries = fallbacks = 0
    for i in range(1, len(atts)):
        if atts[i - 1].ok:
            continue
        if _same(atts[i - 1], atts[i]):
            retries += 1
        else:
            fallbacks += 1
    return retries, fallbacks


def _same(a: Attempt, b: Attempt) -> bool:
    """Same provider and model (unknown parts match anything)."""
    if a.provider and b.provider and a.provider != b.provider:
        return False
    return not (a.model and b.model and a.model != b.model)


def _error_of(rec: SpanRecord) -> str:
    if rec.http_status >= 400:
        return str(rec.http_status)
    return rec.error_type or "unknown"


def _concrete(model: str) -> bool:
    """A real model id (not a gateway alias such as `smart` or `default`)."""
    return bool(model_family(model)) or any(c.isdigit() for c in model)
