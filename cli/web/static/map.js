/* The neighbourhood drawn from the data, offline: geohash cells, the search radius, the
   chargers' public cells and the search point; map tiles under it when configured. */
import { S, distance, h, money } from "./util.js";

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
export function drawMap(center, radius, rows) {
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
