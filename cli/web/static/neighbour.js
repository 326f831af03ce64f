/* The neighbour's view: find (map and list), book, my bookings, a booking's live session,
   receipts, cancel and dispute, the wallet. */
import { drawMap } from "./map.js";
import { S, act, api, clock, digits, distance, field, fill, follow, fromInput, h, kw, kwh, localInput, money, nowNode,
  shortId, showError, table, when, $ } from "./util.js";

export const pages = {
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
    if (s.state === "settled" || s.state === "failed") { source.close(); if (s.state === "settled") setTimeout(S.route, 1500); }
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
        if (done) S.route();
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
