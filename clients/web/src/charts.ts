// Two small SVG charts for the owner's view, drawn with DOM calls (no library, no HTML
// parsing): bars of labels per time bucket, and a learning curve (score against labels).
// Every mark carries its numbers as data attributes and a <title>, so a screen reader (and a
// test) reads the values, not the pixels.

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 180;
const PAD = { left: 44, right: 10, top: 10, bottom: 30 };

function node<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number>,
  title?: string,
): SVGElementTagNameMap[K] {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (title) {
    const t = document.createElementNS(SVG, "title");
    t.textContent = title;
    n.append(t);
  }
  return n;
}

function frame(label: string): SVGSVGElement {
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  svg.append(
    node("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: "axis" }),
    node("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }),
  );
  return svg;
}

function text(x: number, y: number, value: string, anchor = "middle"): SVGTextElement {
  const t = node("text", { x, y, "text-anchor": anchor, class: "tick" });
  t.textContent = value;
  return t;
}

export interface Bucket {
  start: number; // seconds since the epoch
  labels: number;
}

function clock(seconds: number, width: number): string {
  const d = new Date(seconds * 1000);
  return width >= 86400 ? d.toLocaleDateString() : d.toLocaleTimeString();
}

/** Labels per time bucket: one bar per bucket of `width` seconds, empty buckets included. */
export function bucketChart(buckets: Bucket[], width: number): SVGSVGElement {
  const svg = frame(`labels per ${width} s`);
  svg.dataset.bucketSeconds = String(width);
  if (!buckets.length) return svg;
  const first = buckets[0].start;
  const last = buckets[buckets.length - 1].start;
  const slots = Math.round((last - first) / width) + 1;
  const top = Math.max(...buckets.map((b) => b.labels));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const barW = plotW / slots;
  for (const b of buckets) {
    const i = Math.round((b.start - first) / width);
    const h = (b.labels / top) * plotH;
    svg.append(
      node(
        "rect",
        {
          x: PAD.left + i * barW + barW * 0.1,
          y: H - PAD.bottom - h,
          width: Math.max(barW * 0.8, 1),
          height: h,
          class: "bar",
          "data-start": b.start,
          "data-labels": b.labels,
        },
        `${clock(b.start, width)}: ${b.labels} label${b.labels === 1 ? "" : "s"}`,
      ),
    );
  }
  svg.append(
    text(PAD.left - 4, PAD.top + 10, String(top), "end"),
    text(PAD.left - 4, H - PAD.bottom, "0", "end"),
    text(PAD.left, H - 8, clock(first, width), "start"),
    text(W - PAD.right, H - 8, clock(last + width, width), "end"),
  );
  return svg;
}

export interface Point {
  x: number; // labels the model was trained on
  y: number; // its score
  version: number;
}

/** The learning curve: each scored training run as a point, joined in order of labels. */
export function curveChart(points: Point[]): SVGSVGElement {
  const svg = frame("learning curve: score against labels");
  if (!points.length) return svg;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(0, ...xs), Math.max(...xs, 1)];
  const [y0, y1] = [Math.min(0, ...ys), Math.max(1, ...ys)];
  const px = (x: number) => PAD.left + ((x - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
  const py = (y: number) => H - PAD.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - PAD.top - PAD.bottom);
  const sorted = [...points].sort((a, b) => a.x - b.x);
  svg.append(node("polyline", { points: sorted.map((p) => `${px(p.x)},${py(p.y)}`).join(" "), class: "curve" }));
  for (const p of points) {
    svg.append(
      node(
        "circle",
        { cx: px(p.x), cy: py(p.y), r: 4, class: "point", "data-labels": p.x, "data-score": p.y, "data-version": p.version },
        `${p.x} labels: score ${p.y.toFixed(3)} (model ${p.version})`,
      ),
    );
  }
  svg.append(
    text(PAD.left - 4, PAD.top + 10, y1.toFixed(2), "end"),
    text(PAD.left - 4, H - PAD.bottom, y0.toFixed(2), "end"),
    text(PAD.left, H - 8, String(x0), "start"),
    text(W - PAD.right, H - 8, `${x1} labels`, "end"),
  );
  return svg;
}
