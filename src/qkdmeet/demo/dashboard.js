// The demo dashboard: renders state.json every two seconds.
// Every value from the state (participant names, alarms, the join URL) goes into
// the page as text (textContent) or as an attribute of an element built here:
// nothing is parsed as HTML, and the page's Content-Security-Policy forbids
// inline script.
"use strict";

function mb(b) { return ((b || 0) / 1e6).toFixed(2) + " MB"; }

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function para(...parts) {
  const p = el("p");
  for (const part of parts) p.append(typeof part === "string" ? document.createTextNode(part) : part);
  return p;
}

function capText(s) {
  let t = s.cap_bps === 0 ? "paused (key budget)"
    : s.cap_bps ? Math.round(s.cap_bps / 1e3) + " kb/s" : "none";
  if (s.camera_cap_bps === 0 && s.cap_bps !== 0) t += ", cameras paused (key budget)";
  return t;
}

function safeHttpUrl(text) {
  try {
    const u = new URL(String(text));
    return u.protocol === "https:" || u.protocol === "http:" ? u.href : null;
  } catch (e) {
    return null;
  }
}

function render(s) {
  const out = [];
  out.push(para("state: ", el("b", s.state), `, t = ${Math.round(s.t || 0)} s`));
  const q = s.qkd || {};
  const qber = q.qber == null ? "n/a" : (100 * q.qber).toFixed(2) + " %";
  out.push(para(`QKD link: ${((q.rate_bps || 0) / 1e6).toFixed(2)} Mb/s, QBER ${qber}, `
    + `generated ${mb(q.generated_bytes)}`));
  const table = el("table");
  const head = el("tr");
  for (const h of ["direction", "key used", "pool", "payload", "drops"]) head.append(el("th", h));
  table.append(head);
  for (const [n, d] of Object.entries(s.directions || {})) {
    const row = el("tr");
    for (const v of [n, mb(d.key_bytes), mb(d.key_buffered_bytes), mb(d.payload_bytes),
      JSON.stringify(d.drops)]) row.append(el("td", v));
    table.append(row);
  }
  out.push(table);
  const room = s.room || {};
  const names = (room.participants || []).map((p) => p.name).join(", ") || "none";
  out.push(para(`participants: ${names}; video cap: ${capText(s)}`));
  const url = s.join_url ? safeHttpUrl(s.join_url) : null;
  if (url) {
    out.push(para("Join as a remote participant (site B, through the QKD-VPN): ",
      el("a", url, { id: "join", href: url, target: "_blank", rel: "noopener noreferrer" }),
      " (add the invite printed in the demo's terminal)"));
  } else {
    out.push(para("To join from a browser on this host through the QKD-VPN, run the demo with ",
      el("code", "--host-join"), "."));
  }
  for (const a of s.alarms || []) {
    const p = para(`ALARM at ${Math.round(a.t || 0)} s: ${a.message}`);
    p.className = "alarm";
    out.push(p);
  }
  document.getElementById("s").replaceChildren(...out);
}

async function tick() {
  try {
    const r = await fetch("state.json");
    render(await r.json());
  } catch (e) {
    // the demo is starting or gone: keep the last view
  }
}

setInterval(tick, 2000);
tick();
