/* wattshare app: the neighbour's, host's and co-op's views over the node's API.
   No framework, no build step, nothing from the internet. Every value from the node is
   put into the page as text (never as HTML). Errors are shown in words, in #error. */
"use strict";

const S = { paired: false, csrf: "", views: [], now: 0, skew: 0, tiles: "", found: [], query: null, streams: [], generation: 0, watching: null };

/* ---------- small helpers ---------- */
function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "rect", "circle", "line", "text", "g", "image", "title", "path"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
const $ = (sel) => document.querySelector(sel);
/* Replace `el`'s children, skipping the empty ones (DOM's own replaceChildren would write "null"). */
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}
function nowNode() { return Math.floor(Date.now() / 1000) + S.skew; }
function digits(currency) {
  try { return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits; }
  catch { return 2; }
}
function money(minor, currency) {
  const d = digits(currency);
  try { return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 10 ** d); }
  catch { return `${(minor / 10 ** d).toFixed(d)} ${currency}`; }
}
function kwh(wh) { return `${(wh / 1000).toFixed(2)} kWh`; }
function kw(w) { return `${(w / 1000).toFixed(1)} kW`; }
function when(t) {
  return new Date(t * 1000).toLocaleString([], { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}
function clock(t) { return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
function distance(m) { return m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${m} m`; }
function localInput(t) {
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
function fromInput(value) { return Math.floor(new Date(value).getTime() / 1000); }
function shortId(id) { return id.slice(0, 12); }
function peer(id) { return h("span", { title: id }, `${id.slice(0, 16)}…`); }

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
  if (message) box.scrollIntoView({ block: "nearest" });
}
async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", body: JSON.stringify(body),
    headers: { "content-type": "application/json", "x-csrf-token": S.csrf },
  };
  let response;
  try { response = await fetch(path, options); }
  catch { throw new Error("the node does not answer: is it still running?"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `the node answered ${response.status}`);
  return data;
}
/* Run an action from a button: disabled while it runs, its error shown in words. */
async function act(button, work) {
  showError("");
  if (button) button.disabled = true;
  try { return await work(); }
  catch (error) { showError(error.message); return undefined; }
  finally { if (button) button.disabled = false; }
}
function follow(path, onData) {
  const source = new EventSource(path);
  source.onmessage = (event) => onData(JSON.parse(event.data));
  S.streams.push(source);
  return source;
}
function table(columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([name, num]) => h("th", { scope: "col", class: num ? "num" : null }, name)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
      h("td", { class: columns[i][1] ? "num" : null, "data-label": columns[i][0] }, cell)))))));
}
function field(label, input, wide = false) { return h("label", { class: wide ? "wide" : null }, label, input); }

/* ---------- geohash and the offline map ---------- */
const BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz";
function geohashBounds(hash) {
  let lat = [-90, 90], lon = [-180, 180], even = true;
  for (const c of hash) {
    const n = BASE32.indexOf(c);
    for (let bit = 4; bit >= 0; bit--) {
      const range = even ? lon : lat, mid = (range[0] + range[1]) / 2;
      if ((n >> bit) & 1) range[0] = mid; else range[1] = mid;
      even = !even;
    }
  }
  return { s: lat[0], n: lat[1], w: lon[0], e: lon[1] };
}
function geohashOf(lat, lon, precision) {
  let la = [-90, 90], lo = [-180, 180], even = true, out = "", bits = 0, n = 0;
  while (out.length < precision) {
    const range = even ? lo : la, value = even ? lon : lat, mid = (range[0] + range[1]) / 2;
    n = (n << 1) | (value >= mid ? 1 : 0);
    if (value >= mid) range[0] = mid; else range[1] = mid;
    even = !even;
    if (++bits === 5) { out += BASE32[n]; bits = 0; n = 0; }
  }
  return out;
}
function mercator(lat, lon, zoom) {
  const scale = 256 * 2 ** zoom, s = Math.sin((lat * Math.PI) / 180);
  return [((lon + 180) / 360) * scale, (0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)) * scale];
}
/* The neighbourhood drawn from the data: geohash-6 cells, the radius, the chargers' public cells, me. */
function drawMap(center, radius, rows) {
  const W = 600, H = 420;
  const metresPerPixel = (2.2 * radius) / H;
  const zoom = Math.log2((156543.03 * Math.cos((center.lat * Math.PI) / 180)) / metresPerPixel);
  const [cx, cy] = mercator(center.lat, center.lon, zoom);
  const at = (lat, lon) => { const [x, y] = mercator(lat, lon, zoom); return [x - cx + W / 2, y - cy + H / 2]; };
  const svg = h("svg", { class: "map", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Map: ${rows.length} charger(s) within ${distance(radius)} of the search point` });
  if (S.tiles) {
    const z = Math.max(0, Math.min(19, Math.round(zoom))), k = 2 ** (zoom - z), size = 256 * k;
    const [tx, ty] = [(cx - W / 2) / size, (cy - H / 2) / size];
    for (let x = Math.floor(tx); x < tx + W / size; x++) {
      for (let y = Math.floor(ty); y < ty + H / size; y++) {
        const href = S.tiles.replace("{z}", z).replace("{x}", x).replace("{y}", y);
        svg.append(h("image", { href, x: x * size - cx + W / 2, y: y * size - cy + H / 2, width: size, height: size }));
      }
    }
  }
  const seen = new Set();
  const span = (radius * 1.6) / 111320;
  for (let lat = center.lat - span; lat <= center.lat + span; lat += 0.0027) {
    for (let lon = center.lon - span * 1.7; lon <= center.lon + span * 1.7; lon += 0.0054) {
      const cell = geohashOf(lat, lon, 6);
      if (seen.has(cell) || seen.size > 600) continue;
      seen.add(cell);
      const b = geohashBounds(cell), [x1, y1] = at(b.n, b.w), [x2, y2] = at(b.s, b.e);
      svg.append(h("rect", { class: "grid-line", x: x1, y: y1, width: x2 - x1, height: y2 - y1 }));
    }
  }
  const [mx, my] = at(center.lat, center.lon);
  svg.append(h("circle", { class: "radius", cx: mx, cy: my, r: radius / metresPerPixel }));
  svg.append(h("circle", { class: "me", cx: mx, cy: my, r: 8 }, h("title", { text: "the search point" })));  // under the pins
  for (const row of rows) {
    const b = geohashBounds(row.geohash), [x1, y1] = at(b.n, b.w), [x2, y2] = at(b.s, b.e);
    svg.append(h("rect", { class: "cell", x: x1, y: y1, width: Math.max(4, x2 - x1), height: Math.max(4, y2 - y1) }));
    const [px, py] = at(row.lat, row.lon);
    svg.append(h("g", {}, h("title", { text: `#${row.rank}: ${row.connector}, ${money(row.estimate, row.currency)}` }),
      h("circle", { class: "pin", cx: px, cy: py, r: 13 }), h("text", { x: px, y: py, text: row.rank })));
  }
  svg.append(h("text", { class: "label", x: 8, y: H - 10, text: `geohash-6 cells · circle ${distance(radius)}` }));
  return svg;
}

/* ---------- views ---------- */
const VIEWS = {
  neighbour: [["find", "Find"], ["bookings", "My bookings"], ["wallet", "Wallet"]],
  host: [["charger", "Charger"], ["requests", "Bookings"], ["earnings", "Earnings"], ["prices", "Prices & hours"]],
  coop: [["audit", "Audit"], ["members", "Members"], ["money", "Money"], ["checkpoints", "Checkpoints"]],
};
const GROUP = { neighbour: "Charge", host: "Host", coop: "Co-op" };

function route() {
  for (const stream of S.streams) stream.close();
  S.streams = [];
  S.watching = null;
  showError("");
  const [name, arg] = location.hash.replace(/^#/, "").split("/");
  const known = S.views.flatMap((v) => VIEWS[v].map(([id]) => id));
  const page = name === "booking" && S.views.includes("neighbour") ? "booking" : known.includes(name) ? name : known[0];
  const current = page === "booking" ? "bookings" : page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const main = $("#main"), view = h("div"), mine = ++S.generation;
  const render = PAGES[page];
  if (!render) { main.replaceChildren(h("p", {}, "This node serves no view here.")); return; }
  render(view, arg).then(() => {  // only the latest route's page is shown, however the answers race
    if (mine === S.generation) { main.replaceChildren(view); main.focus({ preventScroll: true }); }
  }).catch((error) => showError(error.message));
}

const PAGES = {
  async find(main) {
    const start = nextAt(23), end = start + 7 * 3600;
    const q = S.query || { lat: "", lon: "", radius_m: 2000, start, end, kwh: 20, connector: "", max_price: "" };
    const form = h("form", { class: "fields card", id: "find-form" },
      field("Latitude", h("input", { id: "lat", name: "lat", inputmode: "decimal", required: true, value: q.lat, placeholder: "52.5365" })),
      field("Longitude", h("input", { id: "lon", name: "lon", inputmode: "decimal", required: true, value: q.lon, placeholder: "13.4175" })),
      h("div", { class: "wide actions" }, h("button", { type: "button", class: "secondary", id: "near-me", onclick: nearMe }, "Use my location")),
      field("Within", h("select", { id: "radius", name: "radius" }, [500, 1000, 2000, 5000, 10000].map((m) =>
        h("option", { value: m, selected: m === q.radius_m }, distance(m))))),
      field("Energy wanted (kWh)", h("input", { id: "kwh", name: "kwh", type: "number", min: 1, max: 200, step: 1, value: q.kwh })),
      field("From", h("input", { id: "from", name: "from", type: "datetime-local", required: true, value: localInput(q.start) }), true),
      field("Until", h("input", { id: "until", name: "until", type: "datetime-local", required: true, value: localInput(q.end) }), true),
      field("Connector", h("select", { id: "connector", name: "connector" }, h("option", { value: "" }, "any"),
        ["type2", "ccs2", "chademo", "j1772", "nacs", "gbt-ac", "gbt-dc", "schuko"].map((c) => h("option", { value: c, selected: c === q.connector }, c)))),
      field("Most I pay for it", h("input", { id: "max-price", name: "max_price", inputmode: "decimal", placeholder: "e.g. 6.00", value: q.max_price })),
      h("div", { class: "wide actions" }, h("button", { type: "submit", id: "find-button" }, "Find chargers")));
    const results = h("section", { id: "results", "aria-live": "polite" });
    const fold = h("details", { open: !S.query }, h("summary", { id: "search-summary" }, S.query ? summary(S.query) : "Search"), form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (await search(form.querySelector("button[type=submit]"), results)) {
        fold.open = false;  // on a phone, the results matter now; the summary opens the form again
        fold.querySelector("summary").textContent = summary(S.query);
      }
    });
    main.append(h("h2", {}, "Find a charger"), fold, results);
    if (S.query && S.found.length) showResults(results);
  },
  async bookings(main) {
    main.append(h("h2", {}, "My bookings"));
    const rows = await api("/api/wallet/bookings");
    if (!rows.length) { main.append(h("p", { class: "muted" }, "No bookings yet. ", h("a", { href: "#find" }, "Find a charger"), ".")); return; }
    main.append(table([["Booking"], ["Charger"], ["When"], ["Cap", true], ["State"]], rows.map((r) => [
      h("a", { href: `#booking/${r.booking}` }, shortId(r.booking)), r.charger, `${when(r.start)} – ${clock(r.end)}`,
      money(r.spend_cap, r.currency), r.live === "charging" ? "charging now" : r.state])));
  },
  booking: bookingPage,
  async wallet(main) {
    const data = await api("/api/wallet/balance");
    const currency = data.currency || "EUR";
    const lines = Object.entries(data.balances);
    main.append(h("h2", {}, "Wallet"), h("div", { class: "card" },
      h("p", { class: "price", id: "balance" }, lines.length ? lines.map(([c, v]) => money(v, c)).join(", ") : money(0, currency)),
      h("p", { class: "muted" }, data.currency ? `You may go ${money(data.credit_limit, currency)} below zero (your co-op's credit limit).`
        : "Not admitted by a co-op yet: ask its treasurer.")),
    h("h3", {}, "History"), data.history.length ? table([["When"], ["What"], ["Booking"], ["Amount", true]], data.history.map((m) =>
      [when(m.t), m.kind, m.booking ? h("a", { href: `#booking/${m.booking}` }, shortId(m.booking)) : "", money(m.amount, m.currency)]))
      : h("p", { class: "muted" }, "Nothing yet."));
  },
  charger: hostStatus,
  requests: hostBookings,
  earnings: hostEarnings,
  prices: hostPrices,
  audit: coopAudit,
  members: coopMembers,
  money: coopMoney,
  checkpoints: coopCheckpoints,
};

function nextAt(hour) {
  const now = new Date(nowNode() * 1000), at = new Date(now);
  at.setHours(hour, 0, 0, 0);
  if (at <= now) at.setDate(at.getDate() + 1);
  return Math.floor(at.getTime() / 1000);
}
function nearMe(event) {
  const button = event.currentTarget;
  if (!navigator.geolocation) { showError("this browser cannot tell where you are: type a latitude and longitude"); return; }
  button.disabled = true;
  navigator.geolocation.getCurrentPosition((position) => {
    $("#lat").value = position.coords.latitude.toFixed(5);
    $("#lon").value = position.coords.longitude.toFixed(5);
    button.disabled = false;
  }, (error) => { showError(`your location is not available (${error.message}): type a latitude and longitude`); button.disabled = false; },
  { timeout: 10000 });
}
async function search(button, results) {
  const q = { lat: parseFloat($("#lat").value), lon: parseFloat($("#lon").value), radius_m: parseInt($("#radius").value, 10),
    start: fromInput($("#from").value), end: fromInput($("#until").value), kwh: parseFloat($("#kwh").value),
    connector: $("#connector").value, max_price: $("#max-price").value.trim() };
  if (Number.isNaN(q.lat) || Number.isNaN(q.lon)) { showError("type a latitude and longitude, or use your location"); return false; }
  if (!(q.end > q.start)) { showError("the window must end after it starts"); return false; }
  results.replaceChildren(h("p", { class: "muted" }, "Searching the neighbourhood…"));
  const rows = await act(button, () => api("/api/wallet/find", q));
  if (rows === undefined) { results.replaceChildren(); return false; }
  S.query = q; S.found = rows;
  showResults(results);
  return true;
}
function summary(q) {
  return `Within ${distance(q.radius_m)} of ${q.lat.toFixed(4)}, ${q.lon.toFixed(4)} · ${q.kwh} kWh · change`;
}
function showResults(results) {
  const q = S.query, rows = S.found;
  const list = h("div", { class: "list" });
  for (const row of rows) list.append(chargerCard(row));
  results.replaceChildren(h("h3", {}, `${rows.length} charger(s) free ${when(q.start)} – ${clock(q.end)}`),
    h("div", { class: "grid results" }, drawMap({ lat: q.lat, lon: q.lon }, q.radius_m, rows),
      rows.length ? list : h("p", { class: "muted" }, "Nothing free there then: widen the radius or change the window.")));
}
function chargerCard(row) {
  const rating = row.sessions ? `${row.sessions - row.disputed}/${row.sessions} sessions undisputed` : "new host";
  return h("article", { class: "card charger", "aria-label": `Charger ${row.rank}` },
    h("h3", {}, `#${row.rank} · ${distance(row.distance_m)} · ${row.max_kw} kW ${row.connector}`),
    h("p", { class: "price" }, money(row.estimate, row.currency), " ",
      h("span", { class: "muted" }, `for ${kwh(row.energy_wh)}${row.full ? "" : " (all the window allows)"} · ${money(row.per_kwh, row.currency)}/kWh`)),
    h("ul", { class: "lines" }, row.breakdown.map((line) =>
      h("li", {}, `${line.kind.toLowerCase()} ${line.period}: ${line.kind === "ENERGY" ? kwh(line.quantity) + " " : ""}${money(line.amount, row.currency)}`))),
    h("p", { class: "muted" }, `Host record: ${rating}. Plug in from ${clock(row.plug_in_from)}. `,
      row.cancel_fee ? `Free cancellation until ${row.cancel_until_minutes} min before; then ${money(row.cancel_fee, row.currency)}.` : "Free cancellation."),
    h("div", { class: "actions" }, h("button", { type: "button", onclick: () => bookDialog(row) }, `Book #${row.rank}`)));
}
function bookDialog(row) {
  const q = S.query;
  const suggested = Math.ceil((row.estimate * 1.5) / 10 ** digits(row.currency));
  const cap = h("input", { id: "cap", name: "cap", inputmode: "decimal", required: true, value: String(Math.max(suggested, 1)) });
  const dialog = h("dialog", { "aria-labelledby": "book-title" });
  const form = h("form", { method: "dialog" },
    h("h2", { id: "book-title" }, `Book #${row.rank}: ${when(q.start)} – ${clock(q.end)}`),
    h("p", {}, `Estimated ${money(row.estimate, row.currency)}. The host can never claim more than your cap.`),
    field(`Spend cap (${row.currency})`, cap),
    h("div", { class: "actions" },
      h("button", { type: "submit", id: "confirm-book", value: "book" }, "Book"),
      h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Not now")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const booked = await act(form.querySelector("#confirm-book"), () =>
      api("/api/wallet/book", { ad: `${row.host}/${row.charger}`, start: q.start, end: q.end, cap: cap.value.trim() }));
    dialog.close();
    dialog.remove();
    if (booked) location.hash = `#booking/${booked.booking}`;
  });
  dialog.append(form);
  document.body.append(dialog);
  dialog.showModal();
  cap.focus();
}

async function bookingPage(main, id) {
  const data = await api(`/api/wallet/bookings/${encodeURIComponent(id)}`);
  const b = data.booking, settled = data.settlement;
  main.append(h("h2", {}, `Booking ${shortId(b.booking)}`));
  main.append(h("div", { class: "card" }, h("dl", { class: "facts" },
    h("dt", {}, "Charger"), h("dd", {}, b.charger),
    h("dt", {}, "When"), h("dd", {}, `${when(b.start)} – ${when(b.end)} (plug in from ${clock(data.plug_in_from)})`),
    h("dt", {}, "Spend cap"), h("dd", {}, money(b.spend_cap, b.currency)),
    h("dt", {}, "State"), h("dd", { id: "booking-state" }, b.state),
    h("dt", {}, "Address"), h("dd", { class: "secret" }, data.access.address),
    data.access.code ? [h("dt", {}, "Code"), h("dd", { class: "secret" }, data.access.code)] : null,
    data.access.instructions ? [h("dt", {}, "How to find it"), h("dd", {}, data.access.instructions)] : null)));
  const live = h("section", { class: "card", id: "live", "aria-live": "polite" });
  const actions = h("div", { class: "actions" });
  if (!settled && ["confirmed", "started"].includes(b.state)) {
    const running = b.state === "started";  // a session that began before this page (or this daemon) did
    fill(actions,
      h("button", { type: "button", id: "start", onclick: (e) => act(e.currentTarget, () => startSession(id, live, running)) },
        running ? "Watch the session" : "Start charging"),
      h("button", { type: "button", class: "secondary", id: "stop", onclick: (e) => act(e.currentTarget, () => stopSession(id, live)) }, "Stop"),
      running ? null : h("button", { type: "button", class: "danger", id: "cancel", onclick: () => cancelDialog(id, data.quote) }, "Cancel booking"));
  }
  main.append(actions, live);
  if (data.live && !settled) watchSession(id, live);
  if (data.receipts.length || settled) main.append(receiptsCard(data));
  if ((settled && !data.answer) || b.state === "cancelled") main.append(disputeCard(id));  // what is still open to dispute
}
function gauge(live, s) {
  const done = s.state === "settled", failed = s.state === "failed";
  for (const [id, shown] of [["start", failed], ["cancel", false], ["stop", !done && !failed]]) {
    const button = document.getElementById(id);
    if (button) button.hidden = !shown;
  }
  fill(live, h("h3", {}, done ? "Settled" : failed ? "Stopped following" : s.state === "starting" ? "Starting…" : "Charging now"),
    h("div", { class: "gauge" },
      h("div", {}, h("strong", { id: "live-kw" }, kw(s.power_w)), "power"),
      h("div", {}, h("strong", { id: "live-kwh" }, kwh(s.energy_wh)), "charged"),
      h("div", {}, h("strong", { id: "live-cost" }, money(s.cost, s.currency)), `of ${money(s.cap, s.currency)} cap`)),
    h("progress", { max: s.cap, value: Math.min(s.cost, s.cap), "aria-label": "cost against your cap" }),
    s.t ? h("p", { class: "muted" }, `last receipt #${s.receipts} at ${clock(s.t)}`) : null,
    failed ? h("p", { class: "pill bad" }, s.error) : null,
    done ? h("p", { class: "notice", id: "settled" }, `Settled: ${kwh(s.settlement.energy_wh)} for ${money(s.settlement.amount, s.settlement.currency)}; you ${s.settlement.answer}.`) : null);
}
function watchSession(id, live) {
  if (S.watching && S.watching.readyState !== EventSource.CLOSED) return;  // one live view per page
  const source = S.watching = follow(`/api/wallet/bookings/${encodeURIComponent(id)}/live`, (s) => {
    gauge(live, s);
    if (s.state === "settled" || s.state === "failed") { source.close(); if (s.state === "settled") setTimeout(route, 1500); }
  });
}
async function startSession(id, live, attach) {
  gauge(live, await api(`/api/wallet/bookings/${encodeURIComponent(id)}/start`, { attach }));
  watchSession(id, live);
}
async function stopSession(id, live) {
  gauge(live, await api(`/api/wallet/bookings/${encodeURIComponent(id)}/stop`, {}));
  watchSession(id, live);
}
function cancelDialog(id, quote) {
  const dialog = h("dialog", { "aria-labelledby": "cancel-title" });
  const fee = quote.fee ? `Cancelling now costs ${money(quote.fee, quote.currency)} (it was free until ${when(quote.free_until)}).`
    : `Cancelling now is free (until ${when(quote.free_until)}).`;
  dialog.append(h("h2", { id: "cancel-title" }, "Cancel this booking?"), h("p", { id: "cancel-fee" }, fee),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "danger", id: "confirm-cancel", onclick: async (e) => {
        const done = await act(e.currentTarget, () => api(`/api/wallet/bookings/${encodeURIComponent(id)}/cancel`, {}));
        dialog.close(); dialog.remove();
        if (done) route();
      } }, "Cancel booking"),
      h("button", { type: "button", class: "secondary", onclick: () => { dialog.close(); dialog.remove(); } }, "Keep it")));
  document.body.append(dialog);
  dialog.showModal();
}
function receiptsCard(data) {
  const s = data.settlement;
  return h("section", { class: "card", id: "receipts" }, h("h3", {}, "Receipts"),
    table([["#", true], ["Time"], ["Energy", true]], data.receipts.map((r) => [r.seq, when(r.t), kwh(r.energy_wh)])),
    s ? [h("h3", {}, "Settlement, by tariff period"), table([["Line"], ["Quantity", true], ["Amount", true]], [
      ...s.breakdown.map((l) => [`${l.kind.toLowerCase()} ${l.period}`, l.kind === "ENERGY" ? kwh(l.quantity) : l.quantity, money(l.amount, s.currency)]),
      [h("strong", {}, "total"), kwh(s.energy_wh), h("strong", { id: "settled-amount" }, money(s.amount, s.currency))]]),
    h("p", { class: "muted" }, data.answer ? `You ${data.answer} it.` : "Not answered yet.")] : null);
}
function disputeCard(id) {
  const reason = h("select", { id: "reason" }, [["mispriced", "priced wrongly"], ["over_cap", "more than my cap"],
    ["broken_chain", "receipts do not add up"], ["wrong_booking", "not my booking"], ["bad_time", "fee for a cancel or no-show that was not late"]]
    .map(([v, t]) => h("option", { value: v }, t)));
  const detail = h("input", { id: "detail", maxlength: 300 });
  const form = h("form", { class: "card fields", id: "dispute" }, h("h3", { class: "wide" }, "Something wrong?"),
    field("Reason", reason), field("What is wrong, in a line", detail),
    h("div", { class: "wide actions" }, h("button", { type: "submit", class: "danger" }, "Dispute")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const done = await act(form.querySelector("button"), () =>
      api(`/api/wallet/bookings/${encodeURIComponent(id)}/dispute`, { reason: reason.value, detail: detail.value }));
    if (done) form.replaceChildren(h("p", { class: "notice" }, "Disputed: your co-op will see it on the ledger."));
  });
  return form;
}

/* ---------- host ---------- */
async function hostStatus(main) {
  const s = await api("/api/host/status");
  const flag = (ok, yes, no) => h("span", { class: `pill ${ok ? "good" : "bad"}` }, ok ? yes : no);
  const live = h("section", { class: "card", id: "host-live", "aria-live": "polite" }, h("h3", {}, "Charging now"));
  main.append(h("h2", {}, "Your charger"), h("div", { class: "grid two" },
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Node"), h("dd", { id: "reach" }, flag(!s.reachable.includes("no relay"), s.reachable, s.reachable)),
      h("dt", {}, "Wallbox"), h("dd", { id: "wallbox" }, flag(s.wallbox_connected, `${s.wallbox} connected`, `${s.wallbox} not connected`)),
      h("dt", {}, "Peers"), h("dd", {}, `${s.peers} (${s.links.direct} direct, ${s.links.relayed} relayed)`),
      h("dt", {}, "Advertised"), h("dd", {}, s.ads.map((a) => `${a.charger} in cell ${a.geohash}, seq ${a.seq}`).join("; ") || "nothing yet"),
      h("dt", {}, "Waiting for you"), h("dd", { id: "waiting" }))),
    live));
  const waiting = main.querySelector("#waiting");
  const show = (now) => {
    live.replaceChildren(h("h3", {}, "Charging now"), now.sessions.length
      ? table([["Booking"], ["State"], ["Energy", true], ["Problem"]], now.sessions.map((x) => [shortId(x.booking), x.state, kwh(x.energy_wh), x.error || ""]))
      : h("p", { class: "muted" }, "No session."));
    waiting.replaceChildren(now.pending.length ? h("a", { href: "#requests" }, `${now.pending.length} request(s)`) : "nothing");
  };
  show(s);
  follow("/api/host/live", show);
}
async function hostBookings(main) {
  const rows = await api("/api/host/bookings");
  const shown = rows.filter((r) => r.pending).map((r) => r.booking).sort().join();
  follow("/api/host/live", (now) => { if ([...now.pending].sort().join() !== shown) route(); });  // a new request: show it
  main.append(h("h2", {}, "Bookings of your charger"));
  const pending = rows.filter((r) => r.pending);
  if (pending.length) {
    main.append(h("h3", {}, "Waiting for your answer"));
    for (const r of pending) {
      main.append(h("div", { class: "card", "aria-label": `Request ${shortId(r.booking)}` },
        h("p", {}, `${when(r.start)} – ${clock(r.end)}, up to ${money(r.spend_cap, r.currency)}`),
        h("p", { class: "muted" }, "from ", peer(r.driver)),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "approve", onclick: (e) => act(e.currentTarget, async () => { await api(`/api/host/bookings/${r.booking}/approve`, {}); route(); }) }, "Approve"),
          h("button", { type: "button", class: "danger", onclick: (e) => act(e.currentTarget, async () => { await api(`/api/host/bookings/${r.booking}/decline`, {}); route(); }) }, "Decline"))));
    }
  }
  main.append(rows.length ? table([["Booking"], ["When"], ["Cap", true], ["State"]], rows.map((r) =>
    [shortId(r.booking), `${when(r.start)} – ${clock(r.end)}`, money(r.spend_cap, r.currency), r.pending ? "waiting for you" : r.state]))
    : h("p", { class: "muted" }, "No bookings yet."));
}
function barChart(buckets, currency, label) {
  const W = 360, H = 200, top = 24, bottom = 28, max = Math.max(1, ...buckets.map((b) => b.amount));
  const step = W / buckets.length;
  const svg = h("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
  buckets.forEach((b, i) => {
    const height = ((H - top - bottom) * Math.max(0, b.amount)) / max, x = i * step + step * 0.15;
    svg.append(h("rect", { class: "bar", x, y: H - bottom - height, width: step * 0.7, height }, h("title", { text: `${b.label}: ${money(b.amount, currency)}` })));
    if (i % 2 === buckets.length % 2 || buckets.length <= 6) svg.append(h("text", { x: x + step * 0.35, y: H - 10, "text-anchor": "middle", text: b.label }));
    if (b.amount) svg.append(h("text", { class: "value", x: x + step * 0.35, y: H - bottom - height - 6, "text-anchor": "middle", text: money(b.amount, currency) }));
  });
  return svg;
}
async function hostEarnings(main) {
  const e = await api("/api/host/earnings");
  main.append(h("h2", {}, "Earnings"), h("p", { class: "price", id: "earned" }, `${money(e.total, e.currency)} in all`),
    h("section", { class: "card" }, h("h3", {}, "Per week"), barChart(e.weeks, e.currency, "Earnings per week")),
    h("section", { class: "card" }, h("h3", {}, "Per month"), barChart(e.months, e.currency, "Earnings per month")));
}
async function hostPrices(main) {
  const c = (await api("/api/host/status")).charger;
  const input = (id, value, attrs = {}) => h("input", { id, name: id, value, ...attrs });
  const week = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"];
  const form = h("form", { class: "card fields", id: "prices-form" },
    field(`Price per kWh (${c.currency})`, input("peak", c.peak, { inputmode: "decimal", required: true })),
    field(`Session fee (${c.currency})`, input("flat", c.flat, { inputmode: "decimal" })),
    field("Off-peak hours", input("off_peak_hours", c.off_peak_hours, { placeholder: "23:00-07:00" })),
    field(`Off-peak price per kWh (${c.currency})`, input("off_peak_price", c.off_peak_price, { inputmode: "decimal" })),
    field("Bookable hours", input("hours", c.hours, { placeholder: "00:00-00:00 (all day)", required: true }), true),
    h("fieldset", { class: "wide" }, h("legend", {}, "Bookable days"), h("div", { class: "days" }, week.map((d) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "days", value: d, checked: c.days.includes(d) }), d.slice(0, 3).toLowerCase())))),
    field("Free cancellation until (minutes before)", input("cancel_until_minutes", c.cancel_until_minutes, { type: "number", min: 0 })),
    field(`Late cancellation fee (${c.currency})`, input("cancel_fee", c.cancel_fee, { inputmode: "decimal" })),
    field("No-show after (minutes)", input("noshow_timeout_minutes", c.noshow_timeout_minutes, { type: "number", min: 1 })),
    field(`No-show fee (${c.currency})`, input("noshow_fee", c.noshow_fee, { inputmode: "decimal" })),
    h("div", { class: "wide actions" }, h("button", { type: "submit" }, "Save and re-sign the ad")),
    h("p", { class: "wide", id: "prices-saved", "aria-live": "polite" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const body = { peak: value("peak"), flat: value("flat"), off_peak_hours: value("off_peak_hours"), off_peak_price: value("off_peak_price"),
      hours: value("hours"), days: [...form.querySelectorAll("input[name=days]:checked")].map((b) => b.value),
      cancel_until_minutes: parseInt(value("cancel_until_minutes"), 10), cancel_fee: value("cancel_fee"),
      noshow_timeout_minutes: parseInt(value("noshow_timeout_minutes"), 10), noshow_fee: value("noshow_fee") };
    const saved = await act(form.querySelector("button"), () => api("/api/host/charger", body));
    if (saved) $("#prices-saved").textContent = `Saved: the ad is re-signed (seq ${saved.seq}) and announced.`;
  });
  main.append(h("h2", {}, "Prices, hours and terms"),
    h("p", { class: "muted" }, "Bookings already made keep the prices they were made at."), form);
}

/* ---------- co-op ---------- */
async function coopAudit(main) {
  const out = h("section", { id: "audit-report", "aria-live": "polite" });
  const run = h("button", { type: "button", id: "run-audit", onclick: (e) => act(e.currentTarget, async () => {
    out.replaceChildren(h("p", { class: "muted" }, "Verifying every entry…"), h("progress", { "aria-label": "audit running" }));
    const r = await api("/api/coop/audit");
    const members = Object.entries(r.by_member);
    fill(out, h("p", { class: `notice ${r.ok ? "" : "bad"}`, id: "audit-verdict" },
      r.ok ? `Pass: ${r.entries} entries in ${r.feeds} feeds verified, ${r.checkpoints} checkpoint(s), in ${r.seconds} s.`
        : `${r.violations.length} violation(s) in ${r.entries} entries.`),
    members.length ? [h("h3", {}, "Violations by member"), table([["Member"], ["Violations", true]], members.map(([m, n]) => [m === "the file" ? m : peer(m), n])),
      table([["Rule"], ["Member"], ["Seq", true], ["Detail"]], r.violations.map((v) => [v.rule, v.author ? peer(v.author) : "", v.seq ?? "", v.detail]))] : null,
    r.unwitnessed.length ? [h("h3", {}, "Not yet witnessed"), table([["Feed"], ["Witnessed", true], ["Size", true]], r.unwitnessed.map((u) => [peer(u.feed), u.witnessed, u.size]))] : null,
    h("h3", {}, "Balances (recomputed)"), table([["Member"], ["Balance", true], ["Credit limit", true]], r.balances.map((b) =>
      [peer(b.member), money(b.balance, b.currency), money(b.credit_limit, b.currency)])));
  }) }, "Run the audit");
  main.append(h("h2", {}, "Audit of the co-op's ledger"), h("p", { class: "muted" }, "Every signature, chain, price and balance checked again, as `wattshare audit` does."), run, out);
}
async function coopMembers(main) {
  const m = await api("/api/coop/members");
  main.append(h("h2", {}, `${m.name}: members`), table([["Member"], ["Balance", true], ["Credit limit", true], ["Entries", true]],
    m.members.map((x) => [peer(x.member), money(x.balance, m.currency), money(x.credit_limit, m.currency), x.entries])));
}
async function coopMoney(main) {
  const m = await api("/api/coop/members");
  const form = h("form", { class: "card fields", id: "money-form" },
    field("Kind", h("select", { id: "kind" }, h("option", { value: "deposit" }, "deposit (money paid in)"), h("option", { value: "withdrawal" }, "withdrawal (money paid out)"))),
    field(`Amount (${m.currency})`, h("input", { id: "amount", inputmode: "decimal", required: true })),
    field("Member", h("select", { id: "member" }, m.members.map((x) => h("option", { value: x.member }, `${x.member.slice(0, 24)}…`))), true),
    field("Reference", h("input", { id: "reference", placeholder: "e.g. the bank transfer's reference" }), true),
    h("div", { class: "wide actions" }, h("button", { type: "submit" }, "Record it")),
    h("p", { class: "wide", id: "money-done", "aria-live": "polite" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const done = await act(form.querySelector("button"), () => api("/api/coop/money", {
      kind: $("#kind").value, amount: $("#amount").value.trim(), member: $("#member").value, reference: $("#reference").value }));
    if (done) $("#money-done").textContent = `Recorded: ${done.kind} of ${money(done.amount, done.currency)} (treasurer entry ${done.seq}).`;
  });
  main.append(h("h2", {}, "Deposits and withdrawals"), form);
}
async function coopCheckpoints(main) {
  const rows = await api("/api/coop/checkpoints");
  main.append(h("h2", {}, "Witness checkpoints"), rows.length ? table([["When"], ["Witness"], ["Seq", true], ["Feeds", true], ["Entries", true]],
    rows.map((c) => [when(c.t), peer(c.witness), c.seq, c.feeds, c.entries])) : h("p", { class: "muted" }, "None yet."));
}

/* ---------- start ---------- */
async function pairFromLink() {
  const match = location.hash.match(/^#pair=([A-Za-z0-9_-]+)$/);
  if (!match) return;
  history.replaceState(null, "", location.pathname);
  await api("/api/pair", { token: match[1] });
}
async function start() {
  window.addEventListener("hashchange", () => (location.hash.startsWith("#pair=") || !S.paired ? location.reload() : route()));
  try {
    let session = await api("/api/session");
    S.csrf = session.csrf;
    await pairFromLink();
    session = await api("/api/session");
    Object.assign(S, { paired: session.paired, views: session.views, tiles: session.tiles,
      skew: session.now - Math.floor(Date.now() / 1000) });
    if (!session.paired) {
      $("#main").replaceChildren(h("h2", {}, "This device is not paired"),
        h("p", {}, "Open the pairing link your node printed when it started (or scan its QR code). ",
          "On the node, `wattshare app pair` makes a new one."));
      return;
    }
    const nav = $("#nav");
    for (const view of S.views) {
      if (S.views.length > 1) nav.append(h("span", { class: "group" }, GROUP[view]));
      for (const [id, name] of VIEWS[view]) nav.append(h("a", { href: `#${id}`, "data-page": id }, name));
    }
    route();
  } catch (error) {
    $("#main").replaceChildren();
    showError(error.message);
  }
}
start();
