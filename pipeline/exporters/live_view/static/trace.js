"use strict";
// The trace page: GET /api/traces/{id}, drawn as a summary, the chains of attempts of its
// LLM calls, and the span tree as a waterfall with tracesieve's annotations; a click on a
// span shows its raw attributes and events.

(() => {
  const { el, badge, chip } = LV;
  const traceId = decodeURIComponent(location.pathname.split("/").pop() || "");
  const state = { spans: [], byId: new Map(), resources: [], selected: null, rows: new Map() };

  async function main() {
    document.title = `tracesieve · trace ${traceId.slice(0, 8)}`;
    let data;
    try {
      data = await LV.getJSON(`/api/traces/${encodeURIComponent(traceId)}`);
    } catch (err) {
      LV.showError(err.status === 404 ? `This trace is not held (any more): ${err.message}` : `Cannot load the trace: ${err.message}`);
      document.getElementById("summary").append(el("h1", { text: `Trace ${traceId}` }));
      return;
    }
    state.spans = data.spans;
    state.resources = data.resources;
    for (const s of data.spans) state.byId.set(s.span_id, s);
    summary(data.summary, data.start);
    chains(data.spans);
    waterfall(data.spans);
    const wanted = location.hash.slice(1);
    if (wanted && state.byId.has(wanted)) select(wanted);
  }

  // -- the trace at a glance ---------------------------------------------------------------
  function summary(t, start) {
    const facts = el("dl", { class: "facts" });
    const fact = (k, ...v) => facts.append(el("dt", { text: k }), el("dd", null, ...v));
    fact("Class", badge(t.class));
    fact("Reasons", ...(t.reasons.length ? t.reasons.map((r) => chip(r, "reason")) : ["none"]));
    fact("Task class", t.task_class || "–");
    fact("Duration", LV.duration(t.duration_ms), t.ratio !== null ? el("span", { class: `ratio${t.ratio > 1.5 ? " high" : ""}`, text: ` ${LV.ratio(t.ratio)} the task class's median` }) : "");
    fact("Served by", LV.served(t.providers, t.models));
    fact("Spans", String(t.spans));
    fact("Started", LV.dateTime(start));
    fact("Trace id", el("code", { text: t.trace_id }));
    document.getElementById("summary").replaceChildren(
      el("h1", null, t.name || "(no root span)", t.error ? chip("root span failed", "bad") : ""),
      facts,
    );
  }

  // -- chains of attempts -------------------------------------------------------------------
  function chains(spans) {
    const list = document.getElementById("chain-list");
    const found = spans.filter((s) => s.sieve.fallback && s.sieve.fallback.chain.length && (s.sieve.fallback.fired || s.sieve.fallback.chain.length > 1));
    if (!found.length) return;
    document.getElementById("chains").hidden = false;
    for (const s of found) list.append(chain(s));
  }

  function chain(span) {
    const f = span.sieve.fallback;
    const steps = el("ol", { class: "chain" });
    f.chain.forEach((a, i) => {
      if (i > 0) {
        const prev = f.chain[i - 1];
        const same = prev.provider === a.provider && prev.model === a.model;
        steps.append(el("li", { class: `arrow ${same ? "retry" : "fallback"}`, "aria-hidden": "true" }, el("span", { text: same ? "retry" : "fallback" })));
      }
      steps.append(
        el("li", { class: `attempt ${a.ok ? "ok" : "error"}`, "data-outcome": a.outcome },
          el("span", { class: "n", text: `attempt ${i + 1}` }),
          el("span", { class: "target", text: `${a.provider || "unknown"}/${a.model || "unknown"}` }),
          el("span", { class: "outcome", text: a.outcome || "unknown" })),
      );
    });
    const title = el("button", { type: "button", class: "link", text: span.name });
    title.addEventListener("click", () => select(span.span_id));
    const head = el("h3", null, title, ` · ${f.chain.length} attempt${f.chain.length === 1 ? "" : "s"}`, f.fired ? chip("fallback fired", "warn") : "");
    return el("div", { class: "chain-block", "data-span-id": span.span_id }, head, steps);
  }

  // -- the waterfall ----------------------------------------------------------------------------
  function tree(spans) {
    const children = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent_span_id && state.byId.has(s.parent_span_id)) {
        if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
        children.get(s.parent_span_id).push(s);
      } else {
        roots.push(s);
      }
    }
    const byStart = (a, b) => a.start_ms - b.start_ms;
    const out = [];
    const walk = (s, depth) => {
      out.push([s, depth]);
      for (const c of (children.get(s.span_id) || []).sort(byStart)) walk(c, depth + 1);
    };
    for (const r of roots.sort(byStart)) walk(r, 0);
    return out;
  }

  function notes(s) {
    const a = s.sieve;
    const out = [];
    if (a.provider && (a.provider.served || a.provider.requested)) {
      const p = a.provider;
      const req = `${p.requested || "?"}/${p.model_requested || "?"}`;
      const srv = `${p.served || "?"}/${p.model_served || "?"}`;
      if (p.mismatch) out.push(chip(`asked ${req} → served ${srv}`, "warn", `provider evidence: ${p.evidence || "–"}`));
      else out.push(chip(`served ${srv}`, "info", `requested ${req}; evidence: ${p.evidence || "–"}`));
    }
    if (a.cache && a.cache.hit) {
      const how = [a.cache.type, a.cache.evidence].filter(Boolean).join(": ");
      out.push(chip(`cache hit${how ? ` (${how})` : ""}`, "warn cache", `evidence: ${a.cache.evidence || "–"}`));
    }
    if (a.retries) out.push(chip(`${a.retries} retr${a.retries === 1 ? "y" : "ies"}`, "warn"));
    if (a.attempts && a.attempts > 1) out.push(chip(`${a.attempts} attempts`, "info"));
    if (a.fallback && a.fallback.fired) out.push(chip("fallback", "warn"));
    if (a.schema_error) {
      const where = a.schema_error.path || "(the whole result)";
      out.push(chip(`schema error at ${where}: ${a.schema_error.message}`, "bad schema", a.schema_error.message));
    }
    return out;
  }

  function waterfall(spans) {
    const total = Math.max(1e-6, ...spans.map((s) => s.start_ms + s.duration_ms));
    const axis = document.getElementById("axis");
    axis.replaceChildren(...[0, 0.25, 0.5, 0.75, 1].map((f) => {
      const tick = el("span", { class: "tick", text: LV.duration(total * f) });
      tick.style.left = `${f * 100}%`;
      return tick;
    }));
    const box = document.getElementById("waterfall");
    const frag = document.createDocumentFragment();
    for (const [s, depth] of tree(spans)) {
      const label = el("div", { class: "wf-label" },
        el("span", { class: `kind kind-${s.kind}`, text: s.kind, title: `span kind: ${s.kind}` }),
        el("span", { class: "wf-name", text: s.name, title: s.name }),
        ...notes(s));
      label.style.paddingLeft = `${6 + depth * 14}px`;
      const bar = el("div", { class: `wf-bar${s.status.code === "error" ? " error" : ""}` });
      bar.style.left = `${(s.start_ms / total) * 100}%`;
      bar.style.width = `${Math.max((s.duration_ms / total) * 100, 0.2)}%`;
      const dur = el("span", { class: "wf-dur", text: LV.duration(s.duration_ms) });
      const track = el("div", { class: "wf-track" }, bar, dur);
      const row = el("div", { class: `wf-row${s.status.code === "error" ? " error" : ""}`, "data-span-id": s.span_id, tabindex: "0" }, label, track);
      row.addEventListener("click", () => select(s.span_id));
      row.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          select(s.span_id);
        }
      });
      state.rows.set(s.span_id, row);
      frag.append(row);
    }
    box.replaceChildren(frag);
  }

  // -- one span's details ----------------------------------------------------------------------
  function table(title, entries) {
    if (!entries.length) return null;
    const body = el("tbody");
    for (const [k, v] of entries) body.append(el("tr", null, el("th", { text: k }), el("td", null, el("pre", { text: LV.text(v) }))));
    return el("section", { class: "kv" }, el("h3", { text: title }), el("table", null, body));
  }

  function select(spanId) {
    const s = state.byId.get(spanId);
    if (!s) return;
    if (state.selected) state.rows.get(state.selected)?.classList.remove("selected");
    state.selected = spanId;
    const row = state.rows.get(spanId);
    if (row) {
      row.classList.add("selected");
      row.scrollIntoView({ block: "nearest" });
    }
    history.replaceState(null, "", `#${spanId}`);
    const d = document.getElementById("details");
    const parent = s.parent_span_id ? state.byId.get(s.parent_span_id) : null;
    const overview = [
      ["span id", s.span_id],
      ["parent", parent ? `${parent.name} (${s.parent_span_id})` : s.parent_span_id || "(none: a root span)"],
      ["kind", s.kind],
      ["start", `+${LV.duration(s.start_ms)}`],
      ["duration", LV.duration(s.duration_ms)],
      ["status", s.status.message ? `${s.status.code}: ${s.status.message}` : s.status.code],
      ["scope", s.scope.version ? `${s.scope.name} ${s.scope.version}` : s.scope.name],
    ];
    const ours = Object.entries(s.attributes).filter(([k]) => k.startsWith("sieve."));
    const theirs = Object.entries(s.attributes).filter(([k]) => !k.startsWith("sieve."));
    const events = el("section", { class: "events" }, el("h3", { text: `Events (${s.events.length})` }),
      ...s.events.map((e) => el("div", { class: "event" },
        el("div", { class: "event-head" }, el("b", { text: e.name }), e.at_ms === null ? "" : ` at +${LV.duration(e.at_ms)}`),
        table("", Object.entries(e.attributes)))));
    const res = state.resources[s.resource];
    const parts = [
      el("h2", { class: "span-title", text: s.name }),
      s.sieve.fallback && s.sieve.fallback.chain.length ? chain(s) : null,
      table("Span", overview),
      table("tracesieve", ours),
      table("Attributes", theirs),
      s.events.length ? events : null,
      s.links.length ? table("Links", s.links.map((l) => [`${l.trace_id}/${l.span_id}`, l.attributes])) : null,
      res ? table("Resource", Object.entries(res.attributes)) : null,
    ];
    d.replaceChildren(...parts.filter((p) => p !== null));
  }

  main();
})();
