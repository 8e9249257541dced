// Small SVG charts drawn from the trend report (one point per hour or day × service × verdict).

import { svg, h, fmtLocal, fmtUtc } from "./dom.js";

/** "▲ +40%", "▲ new", "▼ −25%" or "=" for a growth() result. */
export function growthBadge(g, alarming = true) {
  if (g.dir === "flat") return h("span", { class: "growth flat", title: "no change between the halves of the period" }, "=");
  const text = g.dir === "up" ? (g.pct === null ? "▲ new" : `▲ +${g.pct}%`) : `▼ ${g.pct}%`;
  return h("span", { class: `growth ${g.dir}${alarming ? "" : " calm"}`, title: "events in the later half of the period vs the earlier half" }, text);
}

/**
 * The buckets of a range, oldest first, ending with the current one: hours for ranges of up to
 * 7 days, days beyond (the collector picks the same by default). Each is its start in Unix ms.
 */
export function bucketRange(range, now = Date.now()) {
  const size = range.bucket === "hour" ? 3600000 : 86400000;
  const n = range.bucket === "hour" ? Math.round(range.ms / 3600000) : range.days;
  const last = Math.floor(now / size) * size;
  const out = [];
  for (let i = n - 1; i >= 0; i--) out.push(last - i * size);
  return { size, starts: out, bucket: range.bucket };
}

/** Sums trend points into events per bucket of `buckets` (from bucketRange). */
export function eventsPerBucket(points, buckets) {
  const m = new Map(buckets.starts.map((d) => [d, 0]));
  for (const p of points) if (m.has(p.bucket_start_ms)) m.set(p.bucket_start_ms, m.get(p.bucket_start_ms) + p.events);
  return buckets.starts.map((d) => m.get(d));
}

/**
 * Is use growing? Compares the later half of the period with the earlier half:
 * {dir: "up" | "down" | "flat", pct} (pct null when the earlier half had no events).
 */
export function growth(values) {
  const half = Math.floor(values.length / 2);
  const sum = (xs) => xs.reduce((a, b) => a + b, 0);
  const before = sum(values.slice(0, half));
  const after = sum(values.slice(values.length - half));
  if (after === before) return { dir: "flat", pct: 0 };
  const pct = before ? Math.round(((after - before) / before) * 100) : null;
  return { dir: after > before ? "up" : "down", pct };
}

/** A 100×24 sparkline of daily events. */
export function sparkline(values, label, alarming = true) {
  const w = 100, hgt = 24, max = Math.max(1, ...values);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`);
  const rising = values.length > 1 && growth(values).dir === "up";
  return svg(
    "svg",
    { class: `spark ${rising && alarming ? "rising" : ""}`, "data-rising": rising ? "yes" : "no", viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, role: "img", "aria-label": label },
    svg("title", {}, rising ? `${label} (growing)` : label),
    svg("polyline", { points: pts.join(" "), fill: "none" }),
  );
}

const COLORS = { sanctioned: "#2f9e44", tolerated: "#f08c00", unsanctioned: "#e03131", blocked: "#495057" };

/** Stacked bars per hour or day by verdict, labelled in the viewer's time zone, UTC on hover. */
export function trendChart(points, buckets) {
  const verdicts = ["sanctioned", "tolerated", "unsanctioned", "blocked"];
  const days = buckets.starts;
  const per = new Map(days.map((d) => [d, Object.fromEntries(verdicts.map((v) => [v, 0]))]));
  for (const p of points) if (per.has(p.bucket_start_ms)) per.get(p.bucket_start_ms)[p.verdict] += p.events;
  const totals = days.map((d) => verdicts.reduce((s, v) => s + per.get(d)[v], 0));
  const max = Math.max(1, ...totals);
  const hourly = buckets.bucket === "hour";
  const W = 640, H = 180, pad = 24, bw = (W - pad * 2) / days.length;
  const root = svg("svg", { class: "trend", viewBox: `0 0 ${W} ${H + 20}`, role: "img", "aria-label": hourly ? "events per hour" : "events per day", "data-bucket": buckets.bucket, "data-buckets": days.length });
  const label = (d) => (hourly ? fmtLocal(d).slice(5) : fmtLocal(d).slice(5, 10));
  days.forEach((d, i) => {
    let y = H;
    for (const v of verdicts) {
      const n = per.get(d)[v];
      if (!n) continue;
      const bh = (n / max) * (H - pad);
      y -= bh;
      root.appendChild(
        svg("rect", { x: pad + i * bw + (bw > 4 ? 1 : 0), y, width: Math.max(1, bw - (bw > 4 ? 2 : 0)), height: bh, fill: COLORS[v], "data-start": d },
          svg("title", {}, `${fmtLocal(d)} (${fmtUtc(d)}) ${v}: ${n} events`)),
      );
    }
    const every = Math.ceil(days.length / 8);
    if (i % every === Math.floor(every / 2)) root.appendChild(svg("text", { x: pad + i * bw + bw / 2, y: H + 14, "text-anchor": "middle" }, label(d)));
  });
  root.appendChild(svg("text", { x: 2, y: 12 }, String(max)));
  const legend = h("div", { class: "legend" }, verdicts.map((v) => h("span", { class: `swatch verdict-${v}` }, v)));
  return h("div", { class: "chart" }, root, legend);
}
