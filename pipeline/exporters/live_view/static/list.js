"use strict";
// The list page: the newest traces (GET /api/traces), kept current by the event stream
// (GET /api/stream); the filters are the API's, applied by the server to both.

(() => {
  const { el, svg, badge, chip, CLASSES, REASONS } = LV;
  const KEEP = 500; // rows kept and shown
  const RENDER_EVERY = 400; // ms between redraws while traces stream in

  const fields = {
    class: document.getElementById("f-class"),
    reason: document.getElementById("f-reason"),
    task_class: document.getElementById("f-task"),
    provider: document.getElementById("f-provider"),
    q: document.getElementById("f-q"),
  };
  const rows = document.getElementById("rows");
  const statusEl = document.getElementById("status");
  const state = {
    byId: new Map(), // trace id -> summary, oldest first
    stream: null,
    paused: false,
    unseen: 0,
    timer: null,
    loading: 0,
    matched: 0,
  };

  function setStatus(kind, text) {
    statusEl.dataset.state = kind;
    statusEl.textContent = text;
  }

  function params() {
    const p = new URLSearchParams();
    for (const [k, input] of Object.entries(fields)) {
      const v = input.value.trim();
      if (v) p.set(k, v);
    }
    return p;
  }

  function option(select, value, label) {
    if ([...select.options].some((o) => o.value === value)) return;
    select.append(el("option", { value, text: label || value }));
  }

  function setOptions(select, values) {
    const keep = select.value;
    for (const v of values) option(select, v);
    if (keep) option(select, keep);
    select.value = keep;
  }

  // -- loading and streaming -------------------------------------------------------------
  async function load() {
    const mine = ++state.loading;
    const p = params();
    p.set("limit", String(KEEP));
    let data;
    try {
      data = await LV.getJSON(`/api/traces?${p}`);
    } catch (err) {
      setStatus("error", "error");
      LV.showError(`Cannot load traces: ${err.message}`);
      return;
    }
    if (mine !== state.loading) return; // a newer load (the filters changed) wins
    LV.showError("");
    state.byId = new Map(data.traces.reverse().map((t) => [t.trace_id, t]));
    state.matched = data.matched;
    render();
    connect(data.seq);
  }

  function connect(after) {
    if (state.stream) state.stream.close();
    const p = params();
    p.set("after", String(after));
    const es = new EventSource(`/api/stream?${p}`);
    state.stream = es;
    es.addEventListener("hello", (e) => {
      setStatus("live", "live");
      stats(JSON.parse(e.data));
    });
    es.addEventListener("traces", (e) => {
      const got = JSON.parse(e.data);
      for (const t of got) {
        if (!state.byId.has(t.trace_id)) state.matched += 1;
        state.byId.delete(t.trace_id);
        state.byId.set(t.trace_id, t);
      }
      while (state.byId.size > KEEP) state.byId.delete(state.byId.keys().next().value);
      if (state.paused) {
        state.unseen += got.length;
        pauseLabel();
      } else {
        schedule();
      }
    });
    es.addEventListener("stats", (e) => stats(JSON.parse(e.data)));
    es.addEventListener("gap", () => {
      // this page fell behind and missed events: start again from the list
      setStatus("live", "resynchronising…");
      load();
    });
    es.addEventListener("open", () => setStatus("live", "live"));
    es.addEventListener("error", () => {
      if (es.readyState === EventSource.CLOSED) setStatus("error", "disconnected");
      else setStatus("connecting", "reconnecting…");
    });
  }

  function schedule() {
    if (state.timer !== null) return;
    state.timer = setTimeout(() => {
      state.timer = null;
      render();
    }, RENDER_EVERY);
  }

  // -- drawing ---------------------------------------------------------------------------
  function row(t) {
    const href = `/trace/${encodeURIComponent(t.trace_id)}`;
    const tr = el(
      "tr",
      { class: `trace-row${t.error ? " root-error" : ""}`, "data-class": t.class, "data-trace-id": t.trace_id },
      el("td", { class: "time", text: LV.clock(t.received * 1000), title: `received ${LV.dateTime(t.received * 1000)}; started ${LV.dateTime(t.start)}` }),
      el("td", { class: "name" }, el("a", { href, text: t.name || "(no root span)" })),
      el("td", { class: "task", text: t.task_class || "–" }),
      el("td", { class: "cls" }, badge(t.class)),
      el("td", { class: "reasons" }, ...t.reasons.map((r) => chip(r, "reason"))),
      el("td", { class: "served", text: LV.served(t.providers, t.models) }),
      el("td", { class: "num", text: LV.duration(t.duration_ms) }),
      el("td", { class: `num ratio${t.ratio !== null && t.ratio > 1.5 ? " high" : ""}`, text: LV.ratio(t.ratio) }),
      el("td", { class: "num", text: String(t.spans) }),
    );
    tr.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      location.href = href;
    });
    return tr;
  }

  function render() {
    const list = [...state.byId.values()].sort((a, b) => b.seq - a.seq);
    const frag = document.createDocumentFragment();
    for (const t of list) frag.append(row(t));
    rows.replaceChildren(frag);
    document.getElementById("empty").hidden = list.length > 0;
    const filtered = [...params().keys()].length > 0;
    const more = state.matched > list.length ? ` (newest ${list.length} of ${state.matched})` : "";
    document.getElementById("shown").textContent =
      `${list.length} trace${list.length === 1 ? "" : "s"}${filtered ? " matching" : ""}${more}`;
    state.unseen = 0;
    pauseLabel();
  }

  function stats(s) {
    drawChart(s.windows);
    setOptions(fields.task_class, s.facets.task_class);
    setOptions(fields.provider, s.facets.provider);
    const parts = [`${s.held} held`];
    const evicted = s.evicted.max_traces + s.evicted.max_bytes;
    if (evicted) parts.push(`${evicted} evicted`);
    if (s.dropped_spans) parts.push(`${s.dropped_spans} spans dropped (view behind)`);
    document.getElementById("held").textContent = parts.join(" · ");
  }

  function drawChart(windows) {
    const names = [["1m", "1 min"], ["5m", "5 min"], ["15m", "15 min"]];
    const W = 420, BAR = 18, GAP = 10, LEFT = 52, RIGHT = 64;
    const H = names.length * (BAR + GAP);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "traces by class over the last 1, 5 and 15 minutes" });
    names.forEach(([key, label], i) => {
      const counts = windows[key];
      const total = CLASSES.reduce((n, c) => n + counts[c], 0);
      const y = i * (BAR + GAP);
      root.append(svg("text", { x: 0, y: y + BAR - 4, class: "axis-label", text: label }));
      root.append(svg("rect", { x: LEFT, y, width: W - LEFT - RIGHT, height: BAR, class: "track" }));
      let x = LEFT;
      for (const c of CLASSES) {
        if (!total || !counts[c]) continue;
        const w = ((W - LEFT - RIGHT) * counts[c]) / total;
        root.append(svg("rect", { x, y, width: Math.max(w, 1), height: BAR, class: `seg cls-${c}`, "data-class": c },
          svg("title", { text: `${label}: ${counts[c]} ${c}` })));
        x += w;
      }
      root.append(svg("text", { x: W - RIGHT + 8, y: y + BAR - 4, class: "total", text: String(total) }));
    });
    document.getElementById("chart").replaceChildren(root);
    const last = windows["15m"];
    document.getElementById("legend").replaceChildren(
      ...CLASSES.map((c) => el("li", null, el("span", { class: `swatch cls-${c}` }), `${c} `, el("b", { text: String(last[c]) }))),
    );
  }

  function pauseLabel() {
    const b = document.getElementById("pause");
    b.textContent = state.paused ? `Resume${state.unseen ? ` (${state.unseen} new)` : ""}` : "Pause";
  }

  // -- filters ---------------------------------------------------------------------------
  function init() {
    for (const c of CLASSES) option(fields.class, c);
    for (const r of REASONS) option(fields.reason, r);
    const q = new URLSearchParams(location.search);
    for (const [k, input] of Object.entries(fields)) {
      const v = q.get(k);
      if (v) {
        if (input.tagName === "SELECT") option(input, v);
        input.value = v;
      }
    }
    const apply = () => {
      const p = params();
      history.replaceState(null, "", p.toString() ? `?${p}` : location.pathname);
      load();
    };
    for (const input of Object.values(fields)) {
      if (input.tagName === "SELECT") input.addEventListener("change", apply);
    }
    let typing = null;
    fields.q.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(apply, 300);
    });
    document.getElementById("filters").addEventListener("submit", (e) => {
      e.preventDefault();
      apply();
    });
    document.getElementById("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      if (!state.paused) render();
      pauseLabel();
    });
    drawChart({ "1m": zero(), "5m": zero(), "15m": zero() });
    load();
  }

  function zero() {
    return Object.fromEntries(CLASSES.map((c) => [c, 0]));
  }

  init();
})();
