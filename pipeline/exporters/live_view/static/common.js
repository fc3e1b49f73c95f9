"use strict";
// What both pages share. Everything that comes from a trace (span names, attribute
// values, ...) is put in the page as text (textContent, Element.append of strings) or as
// an attribute value: never parsed as HTML.

const LV = (() => {
  const CLASSES = ["clean", "noisy", "corrupted", "failed", "unclassified"];
  const REASONS = [
    "fallback", "llm_retry", "tool_retry", "cache_hit", "provider_mismatch",
    "slow", "multi_model", "tool_schema_invalid", "swallowed_error",
  ];
  const SVG = "http://www.w3.org/2000/svg";

  // an element: props are attributes ("class", "text" for textContent, "on<event>"
  // for listeners); children are nodes or strings (added as text)
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    setProps(e, props);
    for (const c of children) {
      if (c !== null && c !== undefined && c !== false) e.append(c);
    }
    return e;
  }

  function svg(tag, props, ...children) {
    const e = document.createElementNS(SVG, tag);
    setProps(e, props);
    for (const c of children) {
      if (c !== null && c !== undefined && c !== false) e.append(c);
    }
    return e;
  }

  function setProps(e, props) {
    if (!props) return;
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, String(v));
    }
  }

  function badge(cls) {
    return el("span", { class: `badge cls-${CLASSES.includes(cls) ? cls : "unclassified"}`, text: cls });
  }

  function chip(text, kind, title) {
    return el("span", { class: `chip${kind ? " " + kind : ""}`, text, title });
  }

  function duration(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "–";
    if (ms < 1) return `${ms.toFixed(2)} ms`;
    if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
    const m = Math.floor(s / 60);
    return `${m}m ${Math.round(s - 60 * m)}s`;
  }

  function clock(unixMs) {
    if (!unixMs) return "–";
    const d = new Date(unixMs);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function dateTime(unixMs) {
    if (!unixMs) return "–";
    return new Date(unixMs).toLocaleString();
  }

  function ratio(r) {
    return r === null || r === undefined ? "–" : `×${r.toFixed(2)}`;
  }

  function served(providers, models) {
    const parts = [];
    if (providers && providers.length) parts.push(providers.join(", "));
    if (models && models.length) parts.push(models.join(", "));
    return parts.join(" · ") || "–";
  }

  async function getJSON(url) {
    const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      const why = body && body.error ? body.error : `${resp.status} ${resp.statusText}`;
      const err = new Error(why);
      err.status = resp.status;
      throw err;
    }
    return body;
  }

  function showError(message) {
    const box = document.getElementById("error");
    if (!box) return;
    if (message) {
      box.textContent = message;
      box.hidden = false;
    } else {
      box.textContent = "";
      box.hidden = true;
    }
  }

  function text(v) {
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  return { CLASSES, REASONS, el, svg, badge, chip, duration, clock, dateTime, ratio, served, getJSON, showError, text };
})();
