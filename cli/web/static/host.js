/* The host's view: the charger and its node, requests to approve, earnings, prices and terms. */
import { S, act, api, clock, field, follow, h, kwh, money, peer, shortId, table, when, $ } from "./util.js";

async function hostStatus(main) {
  const s = await api("/api/host/status");
  const flag = (ok, yes, no) => h("span", { class: `pill ${ok ? "good" : "bad"}` }, ok ? yes : no);
  const live = h("section", { class: "card", id: "host-live", "aria-live": "polite" }, h("h3", {}, "Charging now"));
  main.append(h("h2", {}, "Your charger"), h("div", { class: "grid two" },
    h("div", { class: "card" }, h("dl", { class: "facts" },
      h("dt", {}, "Node"), h("dd", { id: "reach" }, flag(!s.reachable.includes("no relay"), s.reachable, s.reachable)),
      h("dt", {}, "Wallbox"), h("dd", { id: "wallbox" }, flag(s.wallbox_connected, `${s.wallbox} connected`, `${s.wallbox} not connected`)),
      h("dt", {}, "Peers"), h("dd", {}, `${s.peers} (${s.links.direct} direct, ${s.links.relayed} relayed)`),
      h("dt", {}, "Advertised"), h("dd", {}, s.ads.map((a) => `${a.charger} at geohash ${a.geohash}, seq ${a.seq}`).join("; ") || "nothing yet"),
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
  follow("/api/host/live", (now) => { if ([...now.pending].sort().join() !== shown) S.route(); });  // a new request: show it
  main.append(h("h2", {}, "Bookings of your charger"));
  const pending = rows.filter((r) => r.pending);
  if (pending.length) {
    main.append(h("h3", {}, "Waiting for your answer"));
    for (const r of pending) {
      main.append(h("div", { class: "card", "aria-label": `Request ${shortId(r.booking)}` },
        h("p", {}, `${when(r.start)} – ${clock(r.end)}, up to ${money(r.spend_cap, r.currency)}`),
        h("p", { class: "muted" }, "from ", peer(r.driver)),
        h("div", { class: "actions" },
          h("button", { type: "button", onclick: (e) => act(e.currentTarget, async () => { await api(`/api/host/bookings/${r.booking}/approve`, {}); S.route(); }) }, "Approve"),
          h("button", { type: "button", class: "danger", onclick: (e) => act(e.currentTarget, async () => { await api(`/api/host/bookings/${r.booking}/decline`, {}); S.route(); }) }, "Decline"))));
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

export const pages = { charger: hostStatus, requests: hostBookings, earnings: hostEarnings, prices: hostPrices };
