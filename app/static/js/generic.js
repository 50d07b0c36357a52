// Any other family: send the request body it takes (edited here) and plot each answered field
// over its query grid or points, so a new family is visible the day it ships.

import { postBundle } from "./api.js";
import { Frame, axes, colourBar, drawField, el, quantiles, sequential } from "./draw.js";

const COORDS = ["points", "receivers"];

function guess(domain) {
  // The design's query shape for geometry families; anything else starts empty.
  if (!domain || !domain.box) return {};
  const body = {};
  // A generic enf2enf domain (task geometry-fields): a void in the middle of its trained shape
  // range, and each condition at the middle of its trained range.
  const shape = domain.shape;
  if (shape && shape.kind === "star" && Array.isArray(shape.center) && Array.isArray(shape.radius)) {
    const r = (shape.radius[0] + shape.radius[1]) / 2;
    const ring = Array.from({ length: 24 }, (_, k) => {
      const a = (2 * Math.PI * k) / 24;
      return [shape.center[0] + r * Math.cos(a), shape.center[1] + r * Math.sin(a)].map((v) => +v.toFixed(4));
    });
    body.geometry = { curves: [ring] };
  }
  if (Array.isArray(domain.conditions)) {
    body.conditions = Object.fromEntries(
      domain.conditions.map((c) => [c.name, Array.isArray(c.range) ? (c.range[0] + c.range[1]) / 2 : 1.0]),
    );
  }
  body.query = { grid: { nx: 96, ny: 72 } };
  return body;
}

export class GenericView {
  constructor(model, ui) {
    this.model = model;
    this.ui = ui;
  }

  async mount(root) {
    this.body = el("textarea", { id: "request", rows: 6, cols: 70, spellcheck: false });
    this.body.value = JSON.stringify(guess(this.model.domain), null, 1);
    this.run = el("button", { type: "button", id: "run" }, "Predict");
    this.field = el("select", { id: "field" });
    this.canvas = el("canvas", { id: "generic-canvas", width: 600, height: 470 });
    this.run.addEventListener("click", () => this.predict());
    this.field.addEventListener("change", () => this.draw());
    root.append(
      el(
        "div",
        { class: "controls" },
        el("div", { class: "row" }, `The page knows no view for family "${this.model.family}", task "${this.model.task}": write the request body (see /docs), then`, this.run),
        el("div", { class: "row" }, this.body),
        el("div", { class: "row" }, el("label", {}, "field ", this.field)),
      ),
      el("div", { class: "plots" }, el("figure", {}, this.canvas, el("figcaption", {}, "The chosen field over the answer's points"))),
    );
  }

  unmount() {}

  async predict() {
    let body;
    try {
      body = JSON.parse(this.body.value);
    } catch (e) {
      this.ui.error(`the request is not JSON: ${e.message}`);
      return;
    }
    try {
      this.answer = await postBundle(`v1/models/${encodeURIComponent(this.model.name)}/predict`, body);
    } catch (e) {
      this.ui.error(e.message);
      return;
    }
    this.ui.report("prediction", this.answer, "");
    this.ui.warnings(this.answer.meta.warnings);
    const coords = COORDS.map((n) => this.answer.arrays[n]).find(Boolean);
    const n = coords ? coords.shape[0] : null;
    this.field.replaceChildren();
    for (const [name, a] of Object.entries(this.answer.arrays)) {
      if (COORDS.includes(name) || name.startsWith("grid.") || name === "times") continue;
      if (n === null || a.shape[0] === n) this.field.append(el("option", { value: name }, name));
    }
    this.draw();
  }

  draw() {
    const a = this.answer;
    const name = this.field.value;
    if (!a || !name) return;
    const coords = COORDS.map((n) => a.arrays[n]).find(Boolean);
    const field = a.arrays[name];
    const width = field.shape.slice(1).reduce((x, y) => x * y, 1); // first column of (N, T)
    const values = Float32Array.from({ length: field.shape[0] }, (_, i) => field.data[i * width]);
    const [vmin, vmax] = quantiles(values, [0.01, 0.99]);
    const ctx = this.canvas.getContext("2d");
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const grid = a.meta.grid;
    if (grid && grid.counts && grid.counts.length === 2 && a.arrays["grid.index"]) {
      const [nx, ny] = grid.counts;
      const full = new Float32Array(nx * ny).fill(NaN);
      const index = a.arrays["grid.index"].data;
      for (let i = 0; i < index.length; i++) full[index[i]] = values[i];
      const f = new Frame(this.canvas, [grid.lo[0], grid.hi[0]], [grid.lo[1], grid.hi[1]]);
      drawField(f, full, [nx, ny], grid.lo, grid.hi, sequential, [vmin, vmax]);
      axes(f, "x", "y");
      colourBar(f, sequential, [vmin, vmax], name);
    } else if (coords && coords.shape[1] >= 2) {
      const d = coords.shape[1];
      const xs = [];
      const ys = [];
      for (let i = 0; i < coords.shape[0]; i++) {
        xs.push(coords.data[i * d]);
        ys.push(coords.data[i * d + 1]);
      }
      const f = new Frame(this.canvas, [Math.min(...xs), Math.max(...xs)], [Math.min(...ys), Math.max(...ys)]);
      for (let i = 0; i < xs.length; i++) {
        const [r, g, b] = sequential((values[i] - vmin) / (vmax - vmin || 1));
        ctx.fillStyle = `rgb(${r},${g},${b})`;
        ctx.fillRect(f.px(xs[i]) - 2, f.py(ys[i]) - 2, 4, 4);
      }
      axes(f, "x", "y");
      colourBar(f, sequential, [vmin, vmax], name);
    } else {
      this.ui.error(`the answer has no points or 2-D grid to plot "${name}" over`);
      return;
    }
    this.canvas.dataset.drawn = "true";
  }
}
