/* wattshare app: the neighbour's, host's and co-op's views over the node's API, and the
   router between them. No framework, no build step, nothing from the internet. */
import { pages as coop } from "./coop.js";
import { pages as host } from "./host.js";
import { pages as neighbour } from "./neighbour.js";
import { S, api, h, showError, $ } from "./util.js";

const PAGES = { ...neighbour, ...host, ...coop };
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

async function pairFromLink() {
  const match = location.hash.match(/^#pair=([A-Za-z0-9_-]+)$/);
  if (!match) return;
  history.replaceState(null, "", location.pathname);
  await api("/api/pair", { token: match[1] });
}
async function start() {
  S.route = route;
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
