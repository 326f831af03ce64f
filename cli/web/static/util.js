/* What every view of the app shares: its state, building the page, talking to the node.
   Every value from the node goes into the page as text (never as HTML); errors are shown
   in words, in #error. */

export const S = { paired: false, csrf: "", views: [], skew: 0, tiles: "", found: [], query: null, streams: [], generation: 0, watching: null, route: () => {} };

export function h(tag, attrs = {}, ...children) {
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
export const $ = (sel) => document.querySelector(sel);
/* Replace `el`'s children, skipping the empty ones (DOM's own replaceChildren would write "null"). */
export function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}
export function nowNode() { return Math.floor(Date.now() / 1000) + S.skew; }
export function digits(currency) {
  try { return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits; }
  catch { return 2; }
}
export function money(minor, currency) {
  const d = digits(currency);
  try { return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(minor / 10 ** d); }
  catch { return `${(minor / 10 ** d).toFixed(d)} ${currency}`; }
}
export function kwh(wh) { return `${(wh / 1000).toFixed(2)} kWh`; }
export function kw(w) { return `${(w / 1000).toFixed(1)} kW`; }
export function when(t) {
  return new Date(t * 1000).toLocaleString([], { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}
export function clock(t) { return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }); }
export function distance(m) { return m >= 1000 ? `${(m / 1000).toFixed(1)} km` : `${m} m`; }
export function localInput(t) {
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
export function fromInput(value) { return Math.floor(new Date(value).getTime() / 1000); }
export function shortId(id) { return id.slice(0, 12); }
export function peer(id) { return h("span", { title: id }, `${id.slice(0, 16)}…`); }

export function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
  if (message) box.scrollIntoView({ block: "nearest" });
}
export async function api(path, body) {
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
export async function act(button, work) {
  showError("");
  if (button) button.disabled = true;
  try { return await work(); }
  catch (error) { showError(error.message); return undefined; }
  finally { if (button) button.disabled = false; }
}
export function follow(path, onData) {
  const source = new EventSource(path);
  source.onmessage = (event) => onData(JSON.parse(event.data));
  S.streams.push(source);
  return source;
}
export function table(columns, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([name, num]) => h("th", { scope: "col", class: num ? "num" : null }, name)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
      h("td", { class: columns[i][1] ? "num" : null, "data-label": columns[i][0] }, cell)))))));
}
export function field(label, input, wide = false) { return h("label", { class: wide ? "wide" : null }, label, input); }
