// TripleGain control panel: a small ES module, no dependencies. Every action goes through the
// HTTP API with the token from this tab's session storage; controls a role may not use are
// removed from the page.

const TOKEN_KEY = "triplegain.token";
const ROLES = { viewer: 0, operator: 1, admin: 2 };
// Polling stays inside the default per-token limit of 60 reads a minute: four reads every 6 s,
// four more every 30 s, and live events trigger a refresh at most every 5 s.
const FAST_MS = 6000;
const SLOW_MS = 30000;
const MIN_GAP_MS = 5000;
const MAX_EVENTS = 60;
const MAX_EQUITY_POINTS = 600;

const $ = (sel) => document.querySelector(sel);
const state = { role: null, equity: [], timers: [], stream: null, prices: {}, lastFast: 0, pending: null, backoff: 1 };

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.field = e.field;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try {
    json = await resp.json();
  } catch {
    json = null;
  }
  if (!resp.ok) {
    if (resp.status === 401) signOut("The token was refused; sign in again.");
    if (resp.status === 429) {
      // Over the token's rate limit: poll less often until a request gets through again.
      state.backoff = Math.min(state.backoff * 2, 8);
      flash(`rate limited: retry in ${resp.headers.get("Retry-After") || "a few"} s; polling slower`, true);
    }
    throw new ApiError(resp.status, json);
  }
  if (method === "GET") state.backoff = Math.max(1, state.backoff / 2);
  return json;
}

// ---- formatting ------------------------------------------------------------------------------

function num(v, places = 2) {
  if (v === null || v === undefined || v === "") return "–";
  const x = Number(v);
  if (!Number.isFinite(x)) return String(v);
  const abs = Math.abs(x);
  const p = abs !== 0 && abs < 1 ? Math.max(places, 6) : places;
  return x.toLocaleString("en-US", { maximumFractionDigits: p });
}

function time(v) {
  if (!v) return "–";
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toISOString().replace("T", " ").slice(0, 19);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick") e.addEventListener("click", v);
    else if (k === "class") e.className = v;
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function table(target, headers, rows, rowAttrs = () => ({})) {
  const t = $(target);
  t.replaceChildren();
  t.append(el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const body = el("tbody");
  if (rows.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none")));
  }
  rows.forEach((r, i) => body.append(el("tr", rowAttrs(i), ...r.map((c) => el("td", {}, c)))));
  t.append(body);
}

function flash(text, isError = false) {
  const f = $("#flash");
  f.textContent = text;
  f.className = isError ? "flash error" : "flash";
  f.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => (f.hidden = true), 6000);
}

function can(role) {
  return ROLES[state.role] >= ROLES[role];
}

async function act(label, fn) {
  try {
    await fn();
    flash(`${label}: done`);
  } catch (e) {
    flash(`${label}: ${e.message}${e.field ? ` (${e.field})` : ""}`, true);
  }
  await refresh();
}

// ---- sign-in -----------------------------------------------------------------------------------

async function signIn(t) {
  sessionStorage.setItem(TOKEN_KEY, t);
  let session;
  try {
    session = await api("GET", "/session");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("#signin-error").textContent = e.status === 401 ? "Unknown token." : e.message;
    return;
  }
  state.role = session.role;
  $("#who").textContent = `${session.name} (${session.role})`;
  $("#mode").textContent = session.mode;
  $("#mode").classList.toggle("live", session.mode === "live");
  // Controls the role may not use are not on the page at all.
  for (const node of document.querySelectorAll("[data-role]")) {
    if (!can(node.dataset.role)) node.remove();
  }
  $("#signin").hidden = true;
  $("#panel").hidden = false;
  $("#signout").hidden = false;
  wireControls();
  await Promise.all([refreshFast(), refreshSlow()]);
  schedule(refreshFast, FAST_MS);
  schedule(refreshSlow, SLOW_MS);
  openStream();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const t of state.timers) clearTimeout(t);
  if (state.stream) state.stream.abort();
  // A fresh page restores every control for the next token.
  location.hash = message ? encodeURIComponent(message) : "";
  location.reload();
}

// ---- controls ----------------------------------------------------------------------------------

let wired = false;
function wireControls() {
  if (wired) return;
  wired = true;
  const on = (id, fn) => {
    const b = document.getElementById(id);
    if (b) b.addEventListener("click", fn);
  };
  // A coordinator command answers with the new state: shown at once.
  const control = (label, path, body) =>
    act(label, async () => renderCoordinator({ ...state.lastStatus, ...(await api("POST", path, body)) }));
  on("btn-pause", () => control("Pause", "/coordinator/pause", { reason: "paused from the panel" }));
  on("btn-resume", () => control("Resume", "/coordinator/resume"));
  on("btn-halt", () => {
    if (confirm("Halt trading? Only an admin can resume from a halt.")) {
      control("Halt", "/coordinator/halt", { reason: "halted from the panel" });
    }
  });
  on("btn-admin-resume", () => control("Admin resume", "/coordinator/admin-resume"));
  on("btn-reset-cooldown", () => act("Reset cooldown", () => api("POST", "/risk/reset", { scope: "cooldown" })));
  on("btn-reset-drawdown", () => act("Reset drawdown", () => api("POST", "/risk/reset", { scope: "drawdown" })));
  const form = $("#trade-form");
  if (form) {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      trade("/trades");
    });
    on("trade-validate", () => trade("/trades/validate"));
    on("trade-suggest", suggestLevels);
  }
}

/// A stop 2 % and a target 5 % away from the last price, on the side the trade needs.
function suggestLevels() {
  const form = $("#trade-form");
  const symbol = form.elements.symbol.value;
  const price = (state.prices || {})[symbol];
  if (!Number.isFinite(price) || price <= 0) {
    flash(`no price for ${symbol} yet`, true);
    return;
  }
  const buy = form.elements.side.value === "buy";
  const digits = price >= 1000 ? 1 : price >= 1 ? 4 : 8;
  form.elements.stop_loss.value = (price * (buy ? 0.98 : 1.02)).toFixed(digits);
  form.elements.take_profit.value = (price * (buy ? 1.05 : 0.95)).toFixed(digits);
  if (form.elements.order_type.value === "limit" && !form.elements.price.value) {
    form.elements.price.value = price.toFixed(digits);
  }
}

function tradeBody() {
  const data = new FormData($("#trade-form"));
  const body = {};
  for (const [k, v] of data.entries()) {
    const s = String(v).trim();
    if (s !== "") body[k] = s;
  }
  if (body.order_type === "market") delete body.price;
  return body;
}

async function trade(path) {
  const out = $("#trade-result");
  out.textContent = "…";
  try {
    const r = await api("POST", path, tradeBody());
    const verdict = r.verdict || {};
    const lines = [`verdict: ${verdict.status || "?"}`];
    if (r.correlation_id) lines.push(`correlation id: ${r.correlation_id}`);
    if (verdict.reason) lines.push(`reason: ${verdict.reason}`);
    for (const w of verdict.warnings || []) lines.push(`warning: ${w}`);
    for (const o of r.orders || (r.order ? [r.order] : [])) {
      lines.push(`order: ${o.side} ${num(o.volume, 8)} ${o.symbol} ${o.order_type}${o.price ? ` @ ${num(o.price)}` : ""} ${o.status}`);
    }
    if (r.note) lines.push(r.note);
    out.textContent = lines.join("\n");
    if (r.correlation_id) await showChain(r.correlation_id);
  } catch (e) {
    out.textContent = `refused (${e.status}): ${e.message}${e.field ? ` [${e.field}]` : ""}`;
  }
  await refresh();
}

// ---- views -------------------------------------------------------------------------------------

async function showChain(cid) {
  $("#chain-id").textContent = cid;
  const list = $("#chain");
  list.replaceChildren(el("li", { class: "muted" }, "loading…"));
  try {
    const r = await api("GET", `/decisions/${encodeURIComponent(cid)}`);
    const stages = r.records || r.chain || r.stages || (Array.isArray(r) ? r : []);
    list.replaceChildren();
    for (const s of stages) {
      const detail = s.detail ? JSON.stringify(s.detail) : "";
      list.append(
        el("li", { "data-stage": s.stage },
          el("strong", {}, s.stage || "?"), " ", el("span", { class: "muted" }, time(s.timestamp)),
          el("div", { class: "detail" }, detail.length > 300 ? `${detail.slice(0, 300)}…` : detail)),
      );
    }
    if (stages.length === 0) list.append(el("li", { class: "muted" }, "no records yet"));
  } catch (e) {
    list.replaceChildren(el("li", { class: "error" }, e.message));
  }
}

function renderCoordinator(s) {
  state.lastStatus = s;
  $("#coordinator-state").textContent = String(s.state || "?").toUpperCase();
  $("#coordinator-state").className = `state-${s.state}`;
  $("#halt-reason").textContent = s.halt_reason ? ` — ${s.halt_reason}` : "";
  const tasks = Array.isArray(s.tasks) ? s.tasks : Object.entries(s.tasks || {}).map(([name, t]) => ({ name, ...t }));
  $("#degradation").textContent = s.degradation_level ? `degradation ${s.degradation_level}` : "";
  const rows = tasks.map((t) => [
    t.name,
    t.enabled ? "on" : "off",
    time(t.last_run),
    time(t.next_run),
    String(t.runs ?? ""),
  ]);
  table("#tasks", ["task", "", "last run", "next run", "runs"], rows);
  for (const [id, show] of [
    ["btn-pause", s.state === "running"],
    ["btn-resume", s.state === "paused"],
    ["btn-halt", s.state !== "halted"],
    ["btn-admin-resume", s.state === "halted"],
  ]) {
    const b = document.getElementById(id);
    if (b) b.disabled = !show;
  }
}

function renderRisk(r) {
  const dl = $("#risk");
  dl.replaceChildren();
  const st = r.state || r;
  const items = [
    ["equity", `${num(st.equity_usd)} USD`],
    ["drawdown", `${num(st.drawdown_pct)} %`],
    ["daily P&L", `${num(st.daily_pnl)} USD`],
    ["weekly P&L", `${num(st.weekly_pnl)} USD`],
    ["open exposure", `${num(st.open_exposure_usd)} USD`],
    ["trades today", String(st.trades_today ?? "–")],
    ["losses in a row", String(st.consecutive_losses ?? "–")],
    ["breakers", (st.breakers || []).join(", ") || "none"],
    ["halted", st.halted ? `yes: ${st.halt_reason || ""}` : "no"],
    ["cooldown until", st.cooldown_until ? time(st.cooldown_until) : "none"],
  ];
  for (const [k, v] of items) dl.append(el("dt", {}, k), el("dd", {}, v));
  if (st.equity_usd !== undefined && st.equity_usd !== null) addEquity(st.equity_usd);
}

function addEquity(v) {
  const x = Number(v);
  if (!Number.isFinite(x)) return;
  state.equity.push({ t: Date.now(), v: x });
  if (state.equity.length > MAX_EQUITY_POINTS) state.equity.shift();
  $("#equity-now").textContent = `${num(x)} USD`;
  drawEquity();
}

function drawEquity() {
  const c = $("#equity");
  const g = c.getContext("2d");
  const w = c.width;
  const h = c.height;
  g.clearRect(0, 0, w, h);
  const pts = state.equity;
  if (pts.length === 0) return;
  let lo = Math.min(...pts.map((p) => p.v));
  let hi = Math.max(...pts.map((p) => p.v));
  if (hi - lo < 1e-9) {
    lo -= 1;
    hi += 1;
  }
  const pad = 24;
  g.strokeStyle = "#8892a0";
  g.fillStyle = "#8892a0";
  g.font = "11px sans-serif";
  g.fillText(num(hi), 4, 12);
  g.fillText(num(lo), 4, h - 4);
  g.beginPath();
  g.strokeStyle = "#2f81f7";
  g.lineWidth = 2;
  pts.forEach((p, i) => {
    const x = pad + ((w - 2 * pad) * i) / Math.max(1, pts.length - 1);
    const y = h - pad - ((h - 2 * pad) * (p.v - lo)) / (hi - lo);
    if (i === 0) g.moveTo(x, y);
    else g.lineTo(x, y);
  });
  g.stroke();
}

function renderPositions(list) {
  const rows = list.map((p) => {
    const cells = [
      p.symbol,
      p.side,
      num(p.size, 8),
      num(p.entry_price),
      num(p.stop_loss),
      num(p.take_profit),
      num(p.unrealized_pnl),
      p.status,
    ];
    const actions = el("span", { class: "row-actions" });
    actions.append(el("button", { type: "button", class: "link", "data-action": "chain", onclick: () => showChain(p.correlation_id) }, "chain"));
    if (can("operator") && p.status === "open") {
      actions.append(
        el("button", {
          type: "button", "data-action": "move-stop",
          onclick: () => {
            const v = prompt(`New stop-loss for ${p.symbol}`, p.stop_loss ?? "");
            if (v) act("Move stop", () => api("PATCH", `/positions/${p.id}`, { stop_loss: v.trim() }));
          },
        }, "move stop"),
        el("button", {
          type: "button", class: "danger", "data-action": "close",
          onclick: () => {
            if (confirm(`Close the ${p.symbol} position?`)) act("Close position", () => api("POST", `/positions/${p.id}/close`, {}));
          },
        }, "close"),
      );
    }
    return [...cells, actions];
  });
  table("#positions", ["symbol", "side", "size", "entry", "stop", "target", "unrealised", "status", ""], rows,
    (i) => ({ "data-position-id": list[i].id, "data-correlation-id": list[i].correlation_id }));
}

function renderOrders(list) {
  const rows = list.map((o) => {
    const actions = el("span", { class: "row-actions" });
    actions.append(el("button", { type: "button", class: "link", onclick: () => showChain(o.correlation_id) }, "chain"));
    if (can("operator")) {
      actions.append(el("button", {
        type: "button", "data-action": "cancel",
        onclick: () => act("Cancel order", () => api("POST", `/orders/${o.id}/cancel`)),
      }, "cancel"));
    }
    return [o.symbol, o.side, o.order_type, o.purpose, num(o.volume, 8), num(o.price), o.status, actions];
  });
  table("#orders", ["symbol", "side", "type", "purpose", "volume", "price", "status", ""], rows,
    (i) => ({ "data-order-id": list[i].id }));
}

function renderAllocation(a) {
  const cur = a.current_allocation || {};
  const target = a.target_allocation || {};
  const rows = ["btc", "xrp", "usdt"].map((k) => {
    const now = Number(cur[`${k}_pct`]);
    const want = Number(target[`${k}_pct`]);
    return [k.toUpperCase(), num(cur[`${k}_value_usd`]), `${num(now)} %`, `${num(want)} %`, `${num(now - want)} %`];
  });
  table("#allocation", ["asset", "value USD", "now", "target", "deviation"], rows);
  $("#allocation-note").textContent =
    `total ${num(cur.total_equity_usd)} USD · rebalance ${a.needs_rebalance ? "needed" : "not needed"} (threshold ${num(a.threshold_pct)} %)`;
  const p = cur.prices || {};
  state.prices = { "BTC/USDT": Number(p.btc), "XRP/USDT": Number(p.xrp), "XRP/BTC": Number(p.xrp) / Number(p.btc) };
}

function renderHodl(h) {
  const bags = h.bags || h.hodl || (Array.isArray(h) ? h : []);
  const list = Array.isArray(bags) ? bags : Object.entries(bags).map(([asset, b]) => ({ asset, ...b }));
  table("#hodl", ["asset", "balance", "pending USD", "threshold USD", "value USD", "P&L USD"],
    list.map((b) => [b.asset, num(b.balance, 8), num(b.pending_usd), num(b.threshold_usd), num(b.current_value_usd), num(b.unrealized_pnl_usd)]));
}

function renderTrades(list) {
  table("#trades", ["time", "symbol", "side", "volume", "price", "fee", "realised P&L", ""],
    list.slice(0, 20).map((t) => [
      time(t.executed_at), t.symbol, t.side, num(t.volume, 8), num(t.price), num(t.fee), num(t.realized_pnl),
      el("button", { type: "button", class: "link", onclick: () => showChain(t.correlation_id) }, "chain"),
    ]));
}

function renderActors(a) {
  const list = a.actors || [];
  table("#actors", ["actor", "state", "starts", "restarts", "last crash"],
    list.map((x) => [x.name + (x.core ? " (core)" : ""), x.state, String(x.starts ?? ""), String(x.restarts ?? ""),
      x.last_crash_reason ? `${time(x.last_crash_at)} ${x.last_crash_reason}` : ""]));
}

function schedule(fn, every) {
  const run = async () => {
    await fn();
    state.timers.push(setTimeout(run, every * state.backoff));
  };
  state.timers.push(setTimeout(run, every * state.backoff));
}

/// Refreshes what changes with trading: soon after an action or a live event, never more often
/// than every MIN_GAP_MS.
function refresh() {
  if (state.pending) return state.pending;
  const wait = Math.max(0, state.lastFast + MIN_GAP_MS - Date.now());
  state.pending = new Promise((resolve) => setTimeout(resolve, wait)).then(refreshFast).finally(() => {
    state.pending = null;
  });
  return state.pending;
}

async function refreshFast() {
  state.lastFast = Date.now();
  await load([
    ["/coordinator/status", renderCoordinator],
    ["/risk/state", renderRisk],
    ["/positions?status=open", (r) => renderPositions(r.positions || [])],
    ["/orders?open_only=true", (r) => renderOrders(r.orders || [])],
  ]);
}

async function refreshSlow() {
  await load([
    ["/portfolio/allocation", renderAllocation],
    ["/hodl", renderHodl],
    ["/actors", renderActors],
    ["/session", (s) => ($("#clock").textContent = time(s.business_time))],
    ["/trades?limit=20", (r) => renderTrades(r.trades || [])],
  ]);
}

async function load(jobs) {
  if (!token()) return;
  await Promise.all(jobs.map(async ([path, render]) => {
    try {
      render(await api("GET", path));
    } catch (e) {
      if (e.status !== 401) console.warn(path, e.message);
    }
  }));
}

// ---- live events (SSE over fetch, so the token goes in a header, never in a URL) ---------------

function addEvent(type, data) {
  const list = $("#events");
  let summary = "";
  try {
    const d = JSON.parse(data);
    if (type === "portfolio_updates" && d.equity_usd !== undefined) addEquity(d.equity_usd);
    if (["execution_events", "system_events", "risk_alerts"].includes(type)) refresh();
    summary = [d.event_type, d.event, d.symbol, d.status, d.message, d.action, d.regime, d.bias]
      .filter((x) => x !== undefined && x !== null && typeof x !== "object").join(" · ");
  } catch {
    summary = data.slice(0, 120);
  }
  list.prepend(el("li", { "data-type": type }, el("span", { class: "muted" }, new Date().toISOString().slice(11, 19)), " ",
    el("strong", {}, type), " ", summary));
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

async function openStream() {
  const status = $("#events-status");
  const ctl = new AbortController();
  state.stream = ctl;
  let delay = 1000;
  while (!ctl.signal.aborted && token()) {
    try {
      const resp = await fetch("/api/v1/events", {
        headers: { Authorization: `Bearer ${token()}`, Accept: "text/event-stream" },
        signal: ctl.signal,
      });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      status.textContent = "connected";
      delay = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let type = "message";
          const data = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("event:")) type = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (data.length) addEvent(type, data.join("\n"));
        }
      }
      status.textContent = "reconnecting…";
    } catch (e) {
      if (ctl.signal.aborted) return;
      status.textContent = `disconnected (${e.message}); retrying`;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

// ---- start ---------------------------------------------------------------------------------------

async function fillSymbols() {
  // The symbols the allocation and positions know; BTC/USDT first.
  const select = $("#trade-symbol");
  if (!select) return;
  for (const s of ["BTC/USDT", "XRP/USDT", "XRP/BTC"]) select.append(el("option", {}, s));
  $("#trade-hint").textContent =
    "Every trade goes through the risk engine; a stop-loss is required (0.5 to 5 % away by default). \"Suggest\" fills a 2 % stop and a 5 % target from the last price.";
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("#signin-error").textContent = "";
    signIn($("#token").value.trim());
  });
  $("#signout").addEventListener("click", () => signOut());
  $("#chain-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const cid = $("#chain-input").value.trim();
    if (cid) showChain(cid);
  });
  if (location.hash.length > 1) $("#signin-error").textContent = decodeURIComponent(location.hash.slice(1));
  fillSymbols();
  const saved = token();
  if (saved) signIn(saved);
});
