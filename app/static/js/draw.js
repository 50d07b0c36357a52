// Canvas drawing: colour maps, fields on grids, line plots, colour bars. No library: the page
// must run offline with nothing but what the app serves.

function ramp(stops) {
  // stops: [[t, [r, g, b]], ...] with t ascending in [0, 1]; linear between them.
  return (t) => {
    if (!(t >= 0)) t = 0; // NaN too
    if (t > 1) t = 1;
    let i = 1;
    while (i < stops.length - 1 && stops[i][0] < t) i++;
    const [t0, c0] = stops[i - 1];
    const [t1, c1] = stops[i];
    const u = (t - t0) / (t1 - t0 || 1);
    return [0, 1, 2].map((k) => Math.round(c0[k] + u * (c1[k] - c0[k])));
  };
}

// Diverging (pressure, Cp): blue below zero, white at zero, red above.
export const diverging = ramp([
  [0.0, [5, 48, 97]],
  [0.2, [33, 102, 172]],
  [0.4, [146, 197, 222]],
  [0.5, [247, 247, 247]],
  [0.6, [244, 165, 130]],
  [0.8, [214, 96, 77]],
  [1.0, [103, 0, 31]],
]);

// Sequential (magnitudes, other fields): viridis at five stops.
export const sequential = ramp([
  [0.0, [68, 1, 84]],
  [0.25, [59, 82, 139]],
  [0.5, [33, 145, 140]],
  [0.75, [94, 201, 98]],
  [1.0, [253, 231, 37]],
]);

// World rectangle -> canvas pixels, same scale on both axes (a room is not stretched).
export class Frame {
  constructor(canvas, [x0, x1], [y0, y1], margin = { l: 46, r: 70, t: 14, b: 34 }) {
    this.canvas = canvas;
    this.x0 = x0;
    this.x1 = x1;
    this.y0 = y0;
    this.y1 = y1;
    const w = canvas.width - margin.l - margin.r;
    const h = canvas.height - margin.t - margin.b;
    this.s = Math.min(w / (x1 - x0), h / (y1 - y0));
    this.ox = margin.l + (w - this.s * (x1 - x0)) / 2;
    this.oy = margin.t + (h - this.s * (y1 - y0)) / 2;
  }
  px(x) {
    return this.ox + (x - this.x0) * this.s;
  }
  py(y) {
    return this.oy + (this.y1 - y) * this.s;
  }
  right() {
    return this.px(this.x1);
  }
  // A mouse event's canvas position in world units (the canvas may be scaled by CSS).
  world(event) {
    const r = this.canvas.getBoundingClientRect();
    const cx = ((event.clientX - r.left) * this.canvas.width) / r.width;
    const cy = ((event.clientY - r.top) * this.canvas.height) / r.height;
    return [this.x0 + (cx - this.ox) / this.s, this.y1 - (cy - this.oy) / this.s];
  }
  // The page (CSS) position of a world point: what a click there would need (tests use it).
  client([x, y]) {
    const r = this.canvas.getBoundingClientRect();
    return [
      r.left + (this.px(x) * r.width) / this.canvas.width,
      r.top + (this.py(y) * r.height) / this.canvas.height,
    ];
  }
}

// values[ix * ny + iy] (C order, x first, as the service's grids) on cell centres from lo to
// hi; NaN cells stay transparent so what is drawn underneath (walls, bodies) shows.
export function drawField(frame, values, [nx, ny], lo, hi, colour, [vmin, vmax]) {
  const off = document.createElement("canvas");
  off.width = nx;
  off.height = ny;
  const octx = off.getContext("2d");
  const img = octx.createImageData(nx, ny);
  const span = vmax - vmin || 1;
  for (let ix = 0; ix < nx; ix++) {
    for (let iy = 0; iy < ny; iy++) {
      const v = values[ix * ny + iy];
      if (Number.isNaN(v)) continue;
      const [r, g, b] = colour((v - vmin) / span);
      const p = 4 * ((ny - 1 - iy) * nx + ix);
      img.data[p] = r;
      img.data[p + 1] = g;
      img.data[p + 2] = b;
      img.data[p + 3] = 255;
    }
  }
  octx.putImageData(img, 0, 0);
  const dx = nx > 1 ? (hi[0] - lo[0]) / (nx - 1) : frame.x1 - frame.x0;
  const dy = ny > 1 ? (hi[1] - lo[1]) / (ny - 1) : frame.y1 - frame.y0;
  const ctx = frame.canvas.getContext("2d");
  ctx.save();
  ctx.imageSmoothingEnabled = false; // one cell, one colour: no invented detail
  const x = frame.px(lo[0] - dx / 2);
  const y = frame.py(hi[1] + dy / 2);
  ctx.drawImage(off, x, y, nx * dx * frame.s, ny * dy * frame.s);
  ctx.restore();
}

export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

export function fmt(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

export function axes(frame, xlabel, ylabel) {
  const ctx = frame.canvas.getContext("2d");
  ctx.save();
  ctx.strokeStyle = "#555";
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  ctx.strokeRect(frame.px(frame.x0), frame.py(frame.y1), (frame.x1 - frame.x0) * frame.s,
    (frame.y1 - frame.y0) * frame.s);
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(frame.x0, frame.x1)) {
    ctx.fillText(fmt(t), frame.px(t), frame.py(frame.y0) + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of niceTicks(frame.y0, frame.y1)) {
    ctx.fillText(fmt(t), frame.px(frame.x0) - 4, frame.py(t));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(xlabel, (frame.px(frame.x0) + frame.px(frame.x1)) / 2, frame.canvas.height - 2);
  ctx.translate(11, (frame.py(frame.y0) + frame.py(frame.y1)) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(ylabel, 0, 0);
  ctx.restore();
}

export function colourBar(frame, colour, [vmin, vmax], label) {
  const ctx = frame.canvas.getContext("2d");
  const x = frame.right() + 14;
  const top = frame.py(frame.y1);
  const h = (frame.y1 - frame.y0) * frame.s;
  ctx.save();
  for (let i = 0; i < h; i++) {
    const [r, g, b] = colour(1 - i / h);
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(x, top + i, 12, 1.5);
  }
  ctx.strokeStyle = "#555";
  ctx.strokeRect(x, top, 12, h);
  ctx.fillStyle = "#333";
  ctx.font = "11px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillText(fmt(vmax), x + 15, top);
  ctx.textBaseline = "bottom";
  ctx.fillText(fmt(vmin), x + 15, top + h);
  ctx.textBaseline = "middle";
  ctx.fillText(label, x + 15, top + h / 2);
  ctx.restore();
}

// Line plot: series [{x, y, colour, label, dash}], optional vertical markers
// [{x, colour, label}]; invertY puts negative values up (the aerodynamic Cp convention).
export function linePlot(canvas, { series, xlabel, ylabel, invertY = false, markers = [] }) {
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let xmin = Infinity;
  let xmax = -Infinity;
  let ymin = Infinity;
  let ymax = -Infinity;
  for (const s of series) {
    for (let i = 0; i < s.x.length; i++) {
      if (!Number.isFinite(s.y[i])) continue;
      xmin = Math.min(xmin, s.x[i]);
      xmax = Math.max(xmax, s.x[i]);
      ymin = Math.min(ymin, s.y[i]);
      ymax = Math.max(ymax, s.y[i]);
    }
  }
  if (!Number.isFinite(xmin)) return false;
  const pad = (ymax - ymin) * 0.08 || Math.abs(ymax) * 0.1 || 1;
  ymin -= pad;
  ymax += pad;
  const m = { l: 52, r: 12, t: 12, b: 34 };
  const w = canvas.width - m.l - m.r;
  const h = canvas.height - m.t - m.b;
  const X = (x) => m.l + ((x - xmin) / (xmax - xmin || 1)) * w;
  const Y = (y) => (invertY ? m.t + ((y - ymin) / (ymax - ymin)) * h : m.t + ((ymax - y) / (ymax - ymin)) * h);
  ctx.save();
  ctx.font = "11px sans-serif";
  ctx.strokeStyle = "#ddd";
  ctx.fillStyle = "#333";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of niceTicks(xmin, xmax)) {
    ctx.beginPath();
    ctx.moveTo(X(t), m.t);
    ctx.lineTo(X(t), m.t + h);
    ctx.stroke();
    ctx.fillText(fmt(t), X(t), m.t + h + 4);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const t of niceTicks(ymin, ymax)) {
    ctx.beginPath();
    ctx.moveTo(m.l, Y(t));
    ctx.lineTo(m.l + w, Y(t));
    ctx.stroke();
    ctx.fillText(fmt(t), m.l - 4, Y(t));
  }
  ctx.strokeStyle = "#555";
  ctx.strokeRect(m.l, m.t, w, h);
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(xlabel, m.l + w / 2, canvas.height - 2);
  for (const mk of markers) {
    ctx.strokeStyle = mk.colour || "#888";
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    ctx.moveTo(X(mk.x), m.t);
    ctx.lineTo(X(mk.x), m.t + h);
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.fillStyle = mk.colour || "#888";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(mk.label || "", X(mk.x) + 3, m.t + 2);
  }
  let ly = m.t + 4;
  for (const s of series) {
    ctx.strokeStyle = s.colour || "#1f4e8c";
    ctx.lineWidth = 1.5;
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    let pen = false;
    for (let i = 0; i < s.x.length; i++) {
      if (!Number.isFinite(s.y[i])) {
        pen = false;
        continue;
      }
      if (pen) ctx.lineTo(X(s.x[i]), Y(s.y[i]));
      else ctx.moveTo(X(s.x[i]), Y(s.y[i]));
      pen = true;
    }
    ctx.stroke();
    ctx.setLineDash([]);
    if (s.label) {
      ctx.fillStyle = s.colour || "#1f4e8c";
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      ctx.fillText(s.label, m.l + w - 4, ly);
      ly += 14;
    }
  }
  ctx.translate(12, m.t + h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.fillStyle = "#333";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(ylabel, 0, 0);
  ctx.restore();
  return true;
}

// The q-th quantile of |values| over the finite ones (a colour scale that one hot cell next to
// the source does not wash out).
export function absQuantile(values, q) {
  const a = [];
  for (const v of values) if (Number.isFinite(v)) a.push(Math.abs(v));
  if (!a.length) return 0;
  a.sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.floor(q * a.length))];
}

export function quantiles(values, qs) {
  const a = [];
  for (const v of values) if (Number.isFinite(v)) a.push(v);
  a.sort((x, y) => x - y);
  return qs.map((q) => (a.length ? a[Math.min(a.length - 1, Math.floor(q * a.length))] : 0));
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}
