// enf2enf airfoil flow: a NACA section (and a flap where the model takes two elements) at an
// angle of attack; the Cp field with the bodies and streamlines, and surface Cp against x.

import { coalesce, postBundle, postJson } from "./api.js";
import { Frame, axes, colourBar, diverging, drawField, el, fmt, linePlot, quantiles } from "./draw.js";
import { naca4, parseNaca, surfaceProbes, twoElement } from "./geometry.js";

const NX = 128; // field grid over the trained box: 12,288 decoder queries, ~440 kB binary
const NY = 96;

function slider(id, label, [lo, hi], value, step, unit) {
  const input = el("input", { type: "range", id, min: lo, max: hi, step, value });
  const shown = el("span", { class: "value" }, `${value}${unit}`);
  const echo = () => (shown.textContent = `${input.value}${unit}`);
  input.addEventListener("input", echo);
  input.addEventListener("change", echo);
  return { input, node: el("label", {}, `${label} `, input, shown) };
}

export class AirfoilView {
  constructor(model, ui) {
    this.model = model;
    this.ui = ui;
    this.domain = model.domain;
    this.seq = 0;
    this.update = coalesce(() => this.compute());
  }

  async mount(root) {
    const d = this.domain;
    const aoaRange = d.aoa_deg || [-5, 12];
    const speedRange = d.speed || [0.5, 1.5];
    this.naca = el("input", { id: "naca", value: "2412", size: 6, maxlength: 12, spellcheck: false });
    this.aoa = slider("aoa", "angle of attack", aoaRange, 4, 0.5, "°");
    this.speed = slider("speed", "speed", speedRange, 1, 0.05, "");
    const controls = [el("label", {}, "NACA ", this.naca), this.aoa.node, this.speed.node];
    const inputs = [this.naca, this.aoa.input, this.speed.input];
    // A flap only where the model was trained on two elements (README: max_elements).
    const flap = d.flap && (d.max_elements || 1) >= 2 ? d.flap : null;
    const flapRow = [];
    if (flap) {
      const mid = (r) => Number(((r[0] + r[1]) / 2).toFixed(3));
      this.flapOn = el("input", { type: "checkbox", id: "flap" });
      this.flapNaca = el("input", { id: "flap-naca", value: "0012", size: 6, maxlength: 12, spellcheck: false });
      this.flapChord = slider("flap-chord", "chord", flap.chord, mid(flap.chord), 0.01, "");
      this.flapAngle = slider("flap-deflection", "deflection", flap.deflection_deg, mid(flap.deflection_deg), 1, "°");
      this.flapGap = slider("flap-gap", "gap", flap.gap, mid(flap.gap), 0.005, "");
      this.flapOverlap = slider("flap-overlap", "overlap", flap.overlap, mid(flap.overlap), 0.005, "");
      flapRow.push(
        el("label", {}, this.flapOn, " flap "),
        el("label", {}, "NACA ", this.flapNaca),
        this.flapChord.node,
        this.flapAngle.node,
        this.flapGap.node,
        this.flapOverlap.node,
      );
      inputs.push(this.flapOn, this.flapNaca, this.flapChord.input, this.flapAngle.input, this.flapGap.input, this.flapOverlap.input);
    }
    for (const input of inputs) {
      // Sliders ask as they move (the encoder's latents are cached: only the decoder runs);
      // a newer answer always wins over an older one still on its way.
      input.addEventListener("input", () => this.soon());
      input.addEventListener("change", () => this.soon(0));
    }
    this.canvas = el("canvas", { id: "cp-canvas", width: 600, height: 470 });
    this.surface = el("canvas", { id: "surface-canvas", width: 600, height: 260 });
    root.append(
      el("div", { class: "controls" }, el("div", { class: "row" }, ...controls), flap ? el("div", { class: "row" }, ...flapRow) : null),
      el(
        "div",
        { class: "plots" },
        el("figure", {}, this.canvas, el("figcaption", {}, "Pressure coefficient Cp around the bodies, with streamlines (lengths in chords)")),
        el("figure", {}, this.surface, el("figcaption", {}, "Surface Cp against x (a hair off the wall; suction up)")),
      ),
    );
    this.soon(0);
  }

  unmount() {
    clearTimeout(this.timer);
    this.seq += 1; // an answer still on its way is for a view that is gone
  }

  soon(ms = 120) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.update(), ms);
  }

  geometry() {
    const n = this.domain.panels_per_element || 160;
    const main = parseNaca(this.naca.value);
    if (this.flapOn && this.flapOn.checked) {
      const polys = twoElement(
        main,
        parseNaca(this.flapNaca.value),
        Number(this.flapChord.input.value),
        Number(this.flapAngle.input.value),
        Number(this.flapGap.input.value),
        n,
        Number(this.flapOverlap.input.value),
      );
      const name = `NACA ${this.naca.value.trim()} + flap NACA ${this.flapNaca.value.trim()}`;
      return { name, polys, request: { curves: polys.map((p) => p.map(([x, y]) => [Number(x.toFixed(6)), Number(y.toFixed(6))])) } };
    }
    // A NACA code is sent as such: the service builds the same polyline (geometry.airfoils).
    return { name: `NACA ${this.naca.value.trim()}`, polys: [naca4(main, n)], request: { naca: this.naca.value.trim() } };
  }

  async compute() {
    let geometry;
    try {
      geometry = this.geometry();
    } catch (e) {
      this.ui.error(e.message);
      return;
    }
    const seq = ++this.seq;
    const conditions = { aoa_deg: Number(this.aoa.input.value), speed: Number(this.speed.input.value) };
    const box = this.domain.box || [[-0.5, 1.5], [-0.75, 0.75]];
    const offset = 2 * (this.domain.min_wall_distance || 0.005);
    const probes = surfaceProbes(geometry.polys, offset);
    const path = `v1/models/${encodeURIComponent(this.model.name)}/predict`;
    this.ui.status("Computing the flow…");
    let field;
    let surface;
    try {
      [field, surface] = await Promise.all([
        postBundle(path, { geometry: geometry.request, conditions, query: { grid: { nx: NX, ny: NY, bounds: box } } }),
        postJson(path, { geometry: geometry.request, conditions, query: { points: probes.map((p) => p.point) } }),
      ]);
    } catch (e) {
      if (seq === this.seq) this.ui.error(e.message);
      return;
    }
    if (seq !== this.seq) return;
    this.ui.status("");
    this.ui.report("flow field", field, `${NX} × ${NY} grid`);
    this.ui.report("surface Cp", { ...surface, meta: surface.body }, `${probes.length} points`);
    this.ui.warnings([...(field.meta.warnings || []), ...(surface.body.warnings || [])]);
    this.drawField(field, geometry, box, conditions);
    this.drawSurface(surface.body.fields.cp, probes);
  }

  drawField(answer, { name, polys }, box, conditions) {
    const { counts, lo, hi } = answer.meta.grid;
    const [nx, ny] = counts;
    const index = answer.arrays["grid.index"].data;
    const full = (field) => {
      const out = new Float32Array(nx * ny).fill(NaN);
      const values = answer.arrays[`fields.${field}`].data;
      for (let i = 0; i < index.length; i++) out[index[i]] = values[i];
      return out;
    };
    const cp = full("cp");
    const u = full("u");
    const v = full("v");
    // Cp = 0 (the free stream) is white; the span holds the stagnation point (Cp = 1) and all
    // but the sharpest suction peak at the leading edge.
    const [q0] = quantiles(answer.arrays["fields.cp"].data, [0.005]);
    const span = Math.max(Math.abs(q0), 1);
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const f = new Frame(this.canvas, box[0], box[1]);
    drawField(f, cp, [nx, ny], lo, hi, diverging, [-span, span]);
    this.streamlines(f, { u, v, nx, ny, lo, hi });
    ctx.save();
    ctx.fillStyle = "#333";
    ctx.strokeStyle = "#000";
    for (const poly of polys) {
      ctx.beginPath();
      poly.forEach(([x, y], i) => (i ? ctx.lineTo(f.px(x), f.py(y)) : ctx.moveTo(f.px(x), f.py(y))));
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
    ctx.fillStyle = "#222";
    ctx.font = "12px sans-serif";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(`${name}, α = ${fmt(conditions.aoa_deg)}°, U = ${fmt(conditions.speed)}`, f.px(box[0][0]) + 6, f.py(box[1][1]) + 6);
    ctx.restore();
    axes(f, "x (chords)", "y (chords)");
    colourBar(f, diverging, [-span, span], "Cp");
    // What is on the canvas, for whoever drives the page (the browser test waits on it).
    this.canvas.dataset.drawn = `${name}, aoa ${fmt(conditions.aoa_deg)}, speed ${fmt(conditions.speed)}`;
  }

  // Streamlines from the upstream edge, traced through the answered velocity (bilinear between
  // grid points, midpoint steps); a line ends at a body (NaN cells) or the box's edge.
  streamlines(f, { u, v, nx, ny, lo, hi }) {
    const dx = (hi[0] - lo[0]) / (nx - 1);
    const dy = (hi[1] - lo[1]) / (ny - 1);
    const sample = (x, y) => {
      const gx = (x - lo[0]) / dx;
      const gy = (y - lo[1]) / dy;
      const i = Math.floor(gx);
      const j = Math.floor(gy);
      if (i < 0 || j < 0 || i >= nx - 1 || j >= ny - 1) return null;
      const a = gx - i;
      const b = gy - j;
      const at = (w, ii, jj) => w[ii * ny + jj];
      const lerp = (w) => (1 - a) * (1 - b) * at(w, i, j) + a * (1 - b) * at(w, i + 1, j) + (1 - a) * b * at(w, i, j + 1) + a * b * at(w, i + 1, j + 1);
      const uu = lerp(u);
      const vv = lerp(v);
      return Number.isFinite(uu) && Number.isFinite(vv) ? [uu, vv] : null;
    };
    const ctx = this.canvas.getContext("2d");
    ctx.save();
    ctx.strokeStyle = "rgba(20, 20, 20, 0.55)";
    ctx.lineWidth = 1;
    const h = 0.6 * Math.min(dx, dy);
    const seeds = 24;
    for (let k = 0; k < seeds; k++) {
      let x = lo[0];
      let y = lo[1] + ((k + 0.5) * (hi[1] - lo[1])) / seeds;
      ctx.beginPath();
      ctx.moveTo(f.px(x), f.py(y));
      for (let step = 0; step < 2000; step++) {
        const s0 = sample(x, y);
        if (!s0) break;
        const n0 = Math.hypot(...s0) || 1;
        const s1 = sample(x + (0.5 * h * s0[0]) / n0, y + (0.5 * h * s0[1]) / n0);
        if (!s1) break;
        const n1 = Math.hypot(...s1) || 1;
        x += (h * s1[0]) / n1;
        y += (h * s1[1]) / n1;
        ctx.lineTo(f.px(x), f.py(y));
      }
      ctx.stroke();
    }
    ctx.restore();
  }

  drawSurface(cp, probes) {
    const names = ["main", "flap"];
    const series = [];
    const colours = [["#b2182b", "#2166ac"], ["#e08214", "#1b7837"]];
    for (const element of [...new Set(probes.map((p) => p.element))]) {
      for (const upper of [true, false]) {
        const rows = probes.map((p, i) => ({ ...p, cp: cp[i] })).filter((p) => p.element === element && p.upper === upper);
        rows.sort((a, b) => a.x - b.x);
        const who = probes.some((p) => p.element > 0) ? `${names[element] || `element ${element + 1}`} ` : "";
        series.push({ x: rows.map((r) => r.x), y: rows.map((r) => r.cp), colour: colours[element % 2][upper ? 0 : 1], label: `${who}${upper ? "upper" : "lower"}` });
      }
    }
    this.surfaceSeries = series; // what the plot shows, for scripts and the browser test
    const drawn = linePlot(this.surface, { series, xlabel: "x (chords)", ylabel: "Cp", invertY: true });
    if (drawn) this.surface.dataset.drawn = this.canvas.dataset.drawn;
  }
}
