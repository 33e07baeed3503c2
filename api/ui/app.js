// Glueberry monitor: node info, the address book with live connection states, per-peer
// statistics and connection events, over the gateway's /v1 API.
//
// Rules this file keeps (see docs/ui.md):
// - The API key lives in sessionStorage and goes out only in the Authorization header of
//   fetch() calls to this origin; never in a URL.
// - Events come from an EventSource on /v1/events/stream opened with a single-use ticket
//   (POST /v1/tickets). A used ticket cannot open a second stream, so the browser's own
//   reconnection cannot work: on any stream error the page closes the EventSource, takes
//   a fresh ticket and reopens it with since=<last event id> (backoff 0.5 s .. 10 s).
//   A `reset` frame (cursor no longer retained, or from another run of the node) shows
//   a visible notice; the snapshot that follows it replaces every known state.
// - Peer-supplied text (metadata, ids, error messages) only ever reaches the page as
//   text nodes (textContent / createTextNode); no string is ever parsed as HTML. The CSP
//   enforces Trusted Types, so a string written to an HTML sink would throw.

"use strict";

const KEY_STORAGE = "glueberry.apiKey";
const PAGE_SIZE = 20;
const EVENT_LOG_MAX = 200;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10000;
const STATES = ["disconnected", "connecting", "connected", "established", "reconnecting", "cooldown"];

const session = {
  key: null,
  scopes: [],
  offset: 0,
  total: 0,
  rows: new Map(), // peer id -> {row, state, attempts} of the current page
  states: new Map(), // peer id -> latest known state (snapshot + events)
  source: null,
  lastEventId: null,
  retryMs: RETRY_MIN_MS,
  retryTimer: null,
  generation: 0, // bumps on sign-out so late callbacks of an old session do nothing
  detailPeer: null,
};

// -- DOM helpers: text only ----------------------------------------------------------------

const $ = (id) => document.getElementById(id);

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "onclick") node.addEventListener("click", value);
    else if (name === "title") node.title = String(value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setText(id, value) {
  $(id).textContent = value === undefined || value === null ? "" : String(value);
}

function clear(node) {
  node.replaceChildren();
}

function formatTime(epochSeconds) {
  if (epochSeconds === null || epochSeconds === undefined) return "";
  return new Date(epochSeconds * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function stateBadge(state) {
  const known = STATES.includes(state) ? state : "unknown";
  return el("span", { className: `state state-${known}` }, state || "unknown");
}

// -- notices -------------------------------------------------------------------------------

function notice(kind, text) {
  const item = el(
    "div",
    { className: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" },
    el("span", {}, text),
    el("button", { type: "button", className: "link", onclick: () => item.remove() }, "dismiss"),
  );
  $("notices").prepend(item);
  while ($("notices").children.length > 5) $("notices").lastElementChild.remove();
  return item;
}

function setLive(kind, text) {
  const pill = $("live");
  pill.className = `pill pill-${kind}`;
  pill.textContent = text;
}

// -- REST ----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${code}, HTTP ${status})`);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${session.key}` };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return payload;
}

function can(scope) {
  return session.scopes.includes("admin") || session.scopes.includes(scope);
}

// -- sign in / out -------------------------------------------------------------------------

async function signIn(key) {
  session.key = key;
  session.generation += 1;
  const generation = session.generation;
  setText("signin-error", "");
  let node;
  let ticket;
  try {
    node = await api("GET", "/v1/node");
    // The ticket answer tells the key's scopes; the ticket itself opens the first stream.
    ticket = await api("POST", "/v1/tickets");
  } catch (error) {
    session.key = null;
    sessionStorage.removeItem(KEY_STORAGE);
    const reason =
      error.status === 401
        ? "This API key was refused (unknown or revoked)."
        : error.status === 403
          ? "This API key lacks the monitor scope."
          : `Cannot reach the gateway: ${error.message}`;
    setText("signin-error", reason);
    return;
  }
  if (generation !== session.generation) return;
  sessionStorage.setItem(KEY_STORAGE, key);
  session.scopes = ticket.scopes;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("add-peer").hidden = !can("peers:write");
  setText("whoami", `scopes: ${session.scopes.join(", ")}`);
  renderNode(node);
  openEvents(ticket.ticket);
  await loadPeers();
}

function signOut() {
  session.generation += 1;
  closeEvents();
  session.key = null;
  session.scopes = [];
  session.lastEventId = null;
  session.states.clear();
  session.rows.clear();
  sessionStorage.removeItem(KEY_STORAGE);
  $("api-key").value = "";
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signout").hidden = true;
  setText("whoami", "");
  clear($("events-log"));
  clear($("notices"));
  closeDetail();
  setLive("off", "offline");
}

function keyRejected() {
  signOut();
  setText("signin-error", "The gateway refused the API key (revoked?). Sign in again.");
}

// -- node ----------------------------------------------------------------------------------

function renderNode(node) {
  setText("node-peer-id", node.peer_id);
  setText("node-version", node.version);
  setText("node-running", node.running ? "yes" : "no");
  setText("node-handshake", node.handshake_mode);
  setText("node-capabilities", (node.capabilities || []).join(", "));
  const list = $("node-addrs");
  clear(list);
  for (const addr of node.addrs || []) list.append(el("li", {}, addr));
  setText("node-scopes", session.scopes.join(", "));
}

// -- peers ---------------------------------------------------------------------------------

async function loadPeers() {
  const generation = session.generation;
  let page;
  try {
    page = await api("GET", `/v1/peers?offset=${session.offset}&limit=${PAGE_SIZE}`);
  } catch (error) {
    if (error.status === 401) return keyRejected();
    notice("error", `Cannot list peers: ${error.message}`);
    return;
  }
  if (generation !== session.generation) return;
  if (page.items.length === 0 && page.total > 0 && session.offset > 0) {
    session.offset = Math.max(0, session.offset - PAGE_SIZE);
    return loadPeers();
  }
  session.total = page.total;
  renderPeers(page.items);
}

function renderPeers(items) {
  const body = $("peers-body");
  clear(body);
  session.rows.clear();
  const writer = can("peers:write");
  for (const peer of items) {
    const connection = peer.connection || {};
    // A live event newer than this page wins over the page's state.
    const state = session.states.get(peer.peer_id) || connection.state;
    const stateCell = el("td", { className: "state-cell" }, stateBadge(state));
    const attemptsCell = el("td", { className: "attempts" }, connection.reconnect_attempts ?? 0);
    const name = (peer.metadata && peer.metadata.name) || "";
    const actions = el(
      "td",
      { className: "actions" },
      el("button", { type: "button", className: "stats-btn", onclick: () => openDetail(peer.peer_id) }, "Stats"),
    );
    if (writer) {
      actions.append(
        el("button", { type: "button", className: "connect-btn", onclick: () => peerAction(peer.peer_id, "connect") }, "Connect"),
        el("button", { type: "button", className: "disconnect-btn", onclick: () => peerAction(peer.peer_id, "disconnect") }, "Disconnect"),
      );
    }
    const row = el(
      "tr",
      { dataset: { peerId: peer.peer_id } },
      el("td", { className: "mono peer-id", title: peer.peer_id }, peer.peer_id),
      el("td", { className: "name", title: name }, name),
      stateCell,
      attemptsCell,
      actions,
    );
    if (peer.blacklisted) row.classList.add("banned");
    session.rows.set(peer.peer_id, { row, stateCell, attemptsCell });
    body.append(row);
  }
  if (items.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: 5, className: "muted" }, "The address book is empty.")));
  }
  const first = items.length ? session.offset + 1 : 0;
  setText("page-info", `${first}\u2013${session.offset + items.length} of ${session.total}`);
  $("page-prev").disabled = session.offset === 0;
  $("page-next").disabled = session.offset + items.length >= session.total;
  renderSummary();
}

function renderSummary() {
  let established = 0;
  for (const state of session.states.values()) if (state === "established") established += 1;
  setText("peers-summary", `${session.total} in the address book, ${established} established`);
}

function applyState(peerId, state) {
  session.states.set(peerId, state);
  const entry = session.rows.get(peerId);
  if (entry) entry.stateCell.replaceChildren(stateBadge(state));
  renderSummary();
}

async function peerAction(peerId, action) {
  try {
    // connect answers 202 at once; the states arrive as live events.
    await api("POST", `/v1/peers/${encodeURIComponent(peerId)}/${action}`, {});
  } catch (error) {
    if (error.status === 401) return keyRejected();
    notice("error", `${action} failed: ${error.message}`);
  }
}

async function addPeer(event) {
  event.preventDefault();
  const peerId = $("add-peer-id").value.trim();
  const addr = $("add-peer-addr").value.trim();
  const name = $("add-peer-name").value.trim();
  const body = { peer_id: peerId, addrs: addr ? [addr] : [] };
  if (name) body.metadata = { name };
  try {
    await api("POST", "/v1/peers", body);
  } catch (error) {
    if (error.status === 401) return keyRejected();
    notice("error", `Cannot add the peer: ${error.message}`);
    return;
  }
  $("add-peer").reset();
  await loadPeers();
}

// -- per-peer detail and statistics ---------------------------------------------------------

async function openDetail(peerId) {
  session.detailPeer = peerId;
  $("detail").hidden = false;
  setText("detail-peer-id", peerId);
  await loadDetail();
}

function closeDetail() {
  session.detailPeer = null;
  $("detail").hidden = true;
}

function factRows(list, entries) {
  clear(list);
  for (const [name, value] of entries) {
    const empty = value === "" || value === null || value === undefined;
    list.append(el("dt", {}, name), el("dd", { className: empty ? "muted" : null }, empty ? "\u2014" : value));
  }
}

const TIME_FIELD = /(_seen|_activity|_at|_since|_until)$/;

function scalar(value, name) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number" && name && TIME_FIELD.test(name)) return formatTime(value);
  if (typeof value === "number" && name && name.endsWith("_rtt")) return `${(value * 1000).toFixed(3)} ms`;
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

async function loadDetail() {
  const peerId = session.detailPeer;
  if (!peerId) return;
  const path = `/v1/peers/${encodeURIComponent(peerId)}`;
  let peer = null;
  let stats = null;
  try {
    peer = await api("GET", path);
  } catch (error) {
    if (error.status === 401) return keyRejected();
    if (error.status !== 404) notice("error", `Cannot read the peer: ${error.message}`);
  }
  try {
    stats = await api("GET", `${path}/stats`);
  } catch (error) {
    if (error.status === 401) return keyRejected();
    if (error.status !== 404) notice("error", `Cannot read statistics: ${error.message}`);
  }
  if (peerId !== session.detailPeer) return;
  const connection = (peer && peer.connection) || {};
  const facts = [
    ["State", stateBadge(session.states.get(peerId) || connection.state)],
    ["Reconnect attempts", connection.reconnect_attempts ?? 0],
    ["Next retry", formatTime(connection.next_retry_at)],
    ["Connected since", formatTime(connection.connected_since)],
    ["Direction", connection.connected_since ? (connection.is_outbound ? "outbound" : "inbound") : ""],
    ["Cooldown until", formatTime(connection.cooldown_until)],
  ];
  if (peer) {
    facts.push(["Addresses", (peer.addrs || []).join(" ")]);
    facts.push(["Blacklisted", peer.blacklisted ? "yes" : "no"]);
    for (const [name, value] of Object.entries(peer.metadata || {})) facts.push([`metadata.${name}`, value]);
  } else {
    facts.push(["Address book", "not in the address book"]);
  }
  factRows($("detail-facts"), facts);
  renderStats(stats ? stats.stats : null);
}

function renderStats(stats) {
  $("detail-stats-empty").hidden = Boolean(stats);
  const counters = $("detail-counters");
  const table = $("detail-streams");
  clear(counters);
  clear($("detail-streams-head"));
  clear($("detail-streams-body"));
  table.hidden = true;
  if (!stats) return;
  factRows(
    counters,
    Object.entries(stats)
      .filter(([name]) => name !== "streams")
      .map(([name, value]) => [name, scalar(value, name)]),
  );
  const streams = Object.entries(stats.streams || {});
  if (streams.length === 0) return;
  const columns = [];
  for (const [, values] of streams) {
    for (const name of Object.keys(values || {})) if (!columns.includes(name)) columns.push(name);
  }
  $("detail-streams-head").append(el("th", {}, "stream"), ...columns.map((c) => el("th", {}, c)));
  for (const [stream, values] of streams) {
    $("detail-streams-body").append(
      el("tr", {}, el("td", { className: "mono" }, stream), ...columns.map((c) => el("td", {}, scalar((values || {})[c], c)))),
    );
  }
  table.hidden = false;
}

// -- live events (EventSource with single-use tickets) ----------------------------------------

function closeEvents() {
  if (session.retryTimer !== null) clearTimeout(session.retryTimer);
  session.retryTimer = null;
  if (session.source) session.source.close();
  session.source = null;
}

function eventsUrl(ticket) {
  const query = new URLSearchParams({ ticket });
  if (session.lastEventId === null) query.set("snapshot", "true");
  else query.set("since", String(session.lastEventId));
  return `/v1/events/stream?${query}`;
}

function openEvents(ticket) {
  closeEvents();
  const generation = session.generation;
  const source = new EventSource(eventsUrl(ticket));
  session.source = source;
  setLive("wait", "connecting");
  const on = (type, handler) =>
    source.addEventListener(type, (message) => {
      if (generation !== session.generation || source !== session.source) return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (message.lastEventId) session.lastEventId = Number(message.lastEventId);
      handler(frame);
      setText("events-cursor", session.lastEventId === null ? "" : `cursor ${session.lastEventId}`);
    });
  on("ready", () => {
    session.retryMs = RETRY_MIN_MS;
    setLive("on", "live");
  });
  on("snapshot", onSnapshot);
  on("event", onEvent);
  on("reset", onReset);
  on("heartbeat", () => {});
  source.addEventListener("error", (message) => {
    if (generation !== session.generation || source !== session.source) return;
    if (message instanceof MessageEvent && message.data) return; // not a transport error
    // The ticket in this URL is spent: the browser's own retry would be refused.
    source.close();
    session.source = null;
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const delay = session.retryMs;
  session.retryMs = Math.min(RETRY_MAX_MS, session.retryMs * 2);
  setLive("wait", `reconnecting in ${(delay / 1000).toFixed(1)} s`);
  const generation = session.generation;
  session.retryTimer = setTimeout(async () => {
    session.retryTimer = null;
    if (generation !== session.generation) return;
    let ticket;
    try {
      ticket = await api("POST", "/v1/tickets", { scopes: ["monitor"] });
    } catch (error) {
      if (generation !== session.generation) return;
      if (error.status === 401 || error.status === 403) return keyRejected();
      scheduleReconnect();
      return;
    }
    if (generation !== session.generation) return;
    openEvents(ticket.ticket);
  }, delay);
}

function onSnapshot(frame) {
  session.states.clear();
  for (const { peer_id: peerId, state } of frame.peers) session.states.set(peerId, state);
  for (const [peerId, entry] of session.rows) {
    entry.stateCell.replaceChildren(stateBadge(session.states.get(peerId) || "disconnected"));
  }
  renderSummary();
  logLine({ kind: "snapshot", text: `snapshot of ${frame.peers.length} peer(s) at event ${frame.last_event_id}` });
}

function onEvent(frame) {
  applyState(frame.peer_id, frame.state);
  logLine({
    kind: "event",
    id: frame.id,
    time: frame.timestamp,
    peer: frame.peer_id,
    text: `${frame.previous_state || "\u2205"} \u2192 ${frame.state}`,
    state: frame.state,
    error: frame.error_code ? `${frame.error_code}: ${frame.error_message || ""}` : "",
  });
  if (frame.peer_id === session.detailPeer) loadDetail();
  if (!session.rows.has(frame.peer_id) && frame.state === "established") loadPeers();
}

function onReset(frame) {
  const why =
    frame.reason === "cursor_ahead" || frame.reason === "cursor_earlier_run"
      ? "the node restarted (the stream's cursor belongs to an earlier run)"
      : "events after the last one seen are no longer retained";
  notice(
    "warn",
    `Event stream reset: ${why}. Cursor ${frame.since} could not be resumed; ` +
      `states below are re-read from a fresh snapshot at event ${frame.last_event_id}.`,
  ).classList.add("reset-notice");
  logLine({ kind: "reset", text: `reset (${frame.reason}) from cursor ${frame.since}` });
  loadPeers();
}

function logLine({ kind, id, time, peer, text, state, error }) {
  const item = el(
    "li",
    { className: `log-${kind}`, dataset: { kind } },
    el("span", { className: "log-time" }, formatTime(time ?? Date.now() / 1000)),
    el("span", { className: "log-id" }, id === undefined ? "" : `#${id}`),
    peer ? el("span", { className: "mono log-peer", title: peer }, peer) : null,
    el("span", { className: state ? `log-text state-text-${state}` : peer ? "log-text" : "log-text log-wide" }, text),
  );
  if (error) item.append(el("span", { className: "log-error" }, error));
  if (peer) item.dataset.peerId = peer;
  if (state) item.dataset.state = state;
  const log = $("events-log");
  log.prepend(item);
  while (log.children.length > EVENT_LOG_MAX) log.lastElementChild.remove();
}

// -- wiring --------------------------------------------------------------------------------

function start() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) signIn(key);
  });
  $("signout").addEventListener("click", signOut);
  $("peers-refresh").addEventListener("click", () => loadPeers());
  $("page-prev").addEventListener("click", () => {
    session.offset = Math.max(0, session.offset - PAGE_SIZE);
    loadPeers();
  });
  $("page-next").addEventListener("click", () => {
    session.offset += PAGE_SIZE;
    loadPeers();
  });
  $("add-peer").addEventListener("submit", addPeer);
  $("detail-refresh").addEventListener("click", () => loadDetail());
  $("detail-close").addEventListener("click", closeDetail);
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) signIn(saved);
}

start();
