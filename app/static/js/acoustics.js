// Acoustic DeepONets: the room, a source and a listener placed by clicking, the pressure field
// as a movie (binary answers), the impulse response at the listener, and Listen.

import { ApiError, call, coalesce, postBundle, postJson } from "./api.js";
import { Frame, absQuantile, axes, colourBar, diverging, drawField, el, fmt, linePlot } from "./draw.js";
import { Room } from "./geometry.js";

// The trunk runs on cells x frames points. 64 cells along the longer side and 41 frames keep
// its output (points x modes x 4 B) under the default FIELDSERVE_CACHE_MAX_ITEM_BYTES (64 MB)
// for every shipped model, so it is cached: a moved source is then answered in ~50 ms on 2
// cores (measured, acoustics-room-2d) where recomputing the trunk costs ~2.6 s.
const FRAMES = 41; // 1.25 ms apart over the shipped 50 ms window
const CELLS = 64;
const IR_STEPS = 401; // the plotted impulse response: 8 points a model time step of 0.5 ms

function centre(box) {
  return box.lo.map((lo, a) => (lo + box.hi[a]) / 2);
}

function round(p) {
  return p.map((v) => Math.round(v * 1000) / 1000);
}

// A short dry sound to send through the room, made here (nothing to download): a click is the
// impulse response itself; a clap is a burst of noise with a fast decay.
function drySound(ctx, kind) {
  const rate = ctx.sampleRate;
  if (kind === "click") {
    const buffer = ctx.createBuffer(1, Math.round(0.02 * rate), rate);
    buffer.getChannelData(0)[0] = 1;
    return buffer;
  }
  const n = Math.round(0.25 * rate);
  const buffer = ctx.createBuffer(1, n, rate);
  const data = buffer.getChannelData(0);
  let seed = 12345; // a fixed sequence: the same clap every time
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const noise = seed / 1073741824 - 1;
    const t = i / rate;
    // Two quick slaps 12 ms apart, as a hand clap has, each dying in ~10 ms.
    const env = Math.exp(-t / 0.01) + (t > 0.012 ? 0.6 * Math.exp(-(t - 0.012) / 0.012) : 0);
    data[i] = 0.5 * noise * env;
  }
  return buffer;
}

export class AcousticsView {
  constructor(model, ui) {
    this.model = model;
    this.ui = ui; // {report(label, answer), error(message), status(text)}
    this.domain = model.domain;
    this.seq = { field: 0, ir: 0 };
    this.frame = 0;
    this.playing = true;
    this.frames = null;
    this.audio = null;
    this.fetchField = coalesce(() => this.computeField());
    this.fetchIr = coalesce(() => this.computeIr());
  }

  async mount(root) {
    this.room = await Room.fromDomain(this.domain);
    const region = this.domain.source_region;
    const dim = this.room.dim;
    this.dim = dim;
    const mid = centre(region);
    this.z = { source: dim === 3 ? mid[2] : null, listener: dim === 3 ? mid[2] : null };
    this.source = null;
    // The listener starts in a corner of the source region, so the impulse response shows as
    // soon as a source is placed; a click in listener mode moves it.
    this.listener = this.startingListener(region, mid);

    this.canvas = el("canvas", { id: "field-canvas", width: 600, height: 500 });
    this.irCanvas = el("canvas", { id: "ir-canvas", width: 600, height: 300 });
    this.timeSlider = el("input", { type: "range", id: "time", min: 0, max: FRAMES - 1, value: 0 });
    this.timeLabel = el("span", { class: "value" }, "t = 0 ms");
    this.playButton = el("button", { id: "play", type: "button" }, "Pause");
    this.listenButton = el("button", { id: "listen", type: "button", disabled: true }, "Listen");
    this.drySelect = el(
      "select",
      { id: "dry" },
      el("option", { value: "clap" }, "a hand clap"),
      el("option", { value: "click" }, "a click (the impulse response itself)"),
    );
    this.perFrame = el("input", { type: "checkbox", id: "per-frame", checked: true });
    this.listenInfo = el("span", { class: "note", id: "listen-info" });
    const modeSource = el("input", { type: "radio", name: "place", value: "source", id: "place-source", checked: true });
    const modeListener = el("input", { type: "radio", name: "place", value: "listener", id: "place-listener" });
    this.mode = () => (modeListener.checked ? "listener" : "source");

    const heights = [];
    if (dim === 3) {
      const h = this.room.size[2];
      for (const role of ["source", "listener"]) {
        const slider = el("input", { type: "range", id: `${role}-z`, min: 0.05, max: (h - 0.05).toFixed(2), step: 0.05, value: this.z[role].toFixed(2) });
        const label = el("span", { class: "value" }, `${this.z[role].toFixed(2)} m`);
        slider.addEventListener("change", () => this.setHeight(role, Number(slider.value)));
        slider.addEventListener("input", () => (label.textContent = `${Number(slider.value).toFixed(2)} m`));
        heights.push(el("label", {}, `${role} height `, slider, label));
      }
    }
    this.timeSlider.addEventListener("input", () => {
      this.playing = false;
      this.playButton.textContent = "Play";
      this.frame = Number(this.timeSlider.value);
      this.draw();
    });
    this.playButton.addEventListener("click", () => {
      this.playing = !this.playing;
      this.playButton.textContent = this.playing ? "Pause" : "Play";
    });
    this.perFrame.addEventListener("change", () => this.draw());
    this.canvas.addEventListener("click", (e) => this.place(e));
    this.listenButton.addEventListener("click", () => this.listen());

    const [t0, t1] = this.domain.time_window;
    root.append(
      el(
        "div",
        { class: "controls" },
        el("div", { class: "row" }, "Click the room to place the ", el("label", {}, modeSource, " source"), el("label", {}, modeListener, " listener")),
        dim === 3 ? el("div", { class: "row" }, ...heights, el("span", { class: "note" }, "the plan is the horizontal slice at the listener's height")) : null,
        el("div", { class: "row" }, this.playButton, this.timeSlider, this.timeLabel, el("label", {}, this.perFrame, " scale each frame")),
        el("div", { class: "row" }, this.listenButton, " ", this.drySelect, " through the room ", this.listenInfo),
      ),
      el(
        "div",
        { class: "plots" },
        el("figure", {}, this.canvas, el("figcaption", {}, `Sound pressure p(x, t) over ${fmt(t0 * 1e3)}–${fmt(t1 * 1e3)} ms after the source's pulse (Pa); walls grey, furniture below or above the plan dashed, the trained source region dotted green`)),
        el("figure", {}, this.irCanvas, el("figcaption", {}, "Impulse response at the listener: p(t) at the listener for the source's pulse")),
      ),
    );
    this.buildGrid();
    this.draw();
    this.ui.status("Click the room to place the source.");
    this.tick = setInterval(() => {
      if (this.playing && this.frames) {
        this.frame = (this.frame + 1) % this.frames.length;
        this.timeSlider.value = this.frame;
        this.draw();
      }
    }, 90);
  }

  // Toward a corner of the source region at the plan's height, else the first air point of a
  // lattice over the region (a scene may have furniture anywhere).
  startingListener(region, mid) {
    const at = (f) => region.lo.map((lo, a) => (a === 2 ? mid[2] : lo + f[a] * (region.hi[a] - lo)));
    const tries = [[0.25, 0.75], [0.5, 0.5]];
    for (let i = 0; i <= 8; i++) for (let j = 0; j <= 8; j++) tries.push([i / 8, j / 8]);
    return round(at(tries.find((f) => this.room.isAir(at(f))) || [0.5, 0.5]));
  }

  unmount() {
    clearInterval(this.tick);
    this.seq.field += 1; // answers still on their way are for a view that is gone
    this.seq.ir += 1;
    if (this.audio) this.audio.close();
  }

  // The field's cells: cell centres over the room's bounding box (as the service's own grid).
  // 2-D asks for that grid by counts; 3-D sends the plan's air cells at the listener height.
  buildGrid() {
    const [sx, sy] = this.room.size;
    const scale = CELLS / Math.max(sx, sy);
    const nx = Math.max(8, Math.round(sx * scale));
    const ny = Math.max(8, Math.round(sy * scale));
    const lo = [sx / nx / 2, sy / ny / 2];
    const hi = [sx - lo[0], sy - lo[1]];
    const grid = { nx, ny, lo, hi, index: null, points: null };
    if (this.dim === 3) {
      const points = [];
      const index = [];
      for (let ix = 0; ix < nx; ix++) {
        for (let iy = 0; iy < ny; iy++) {
          const p = [lo[0] + (ix * (hi[0] - lo[0])) / (nx - 1), lo[1] + (iy * (hi[1] - lo[1])) / (ny - 1), this.z.listener];
          if (this.room.isAir(p)) {
            points.push(round(p));
            index.push(ix * ny + iy);
          }
        }
      }
      grid.points = points;
      grid.index = index;
    }
    this.grid = grid;
    this.frames = null;
  }

  setHeight(role, z) {
    this.z[role] = z;
    if (role === "listener") {
      this.listener[2] = z;
      this.buildGrid();
      this.draw();
      this.refresh({ field: true, ir: true });
    } else if (this.source) {
      this.moveSource([this.source[0], this.source[1], z]);
    }
  }

  place(event) {
    const [x, y] = this.frame2d.world(event);
    const point = this.dim === 3 ? [x, y, this.z[this.mode()]] : [x, y];
    if (this.mode() === "source") this.moveSource(round(point));
    else this.moveListener(round(point));
  }

  moveSource(point) {
    this.previousSource = this.source;
    this.source = point;
    this.draw();
    this.refresh({ field: true, ir: true });
  }

  moveListener(point) {
    this.previousListener = this.listener;
    this.listener = point;
    this.draw();
    this.refresh({ field: false, ir: true });
  }

  refresh({ field, ir }) {
    if (!this.source) return;
    this.listenButton.disabled = false;
    if (field) this.fetchField();
    if (ir) this.fetchIr();
  }

  path(route) {
    return `v1/models/${encodeURIComponent(this.model.name)}/${route}`;
  }

  times(num) {
    const [start, stop] = this.domain.time_window;
    return { start, stop, num };
  }

  // A refused position (422: in a wall, in the furniture) is shown in the service's words and
  // the marker goes back where it was.
  refused(e, role) {
    this.ui.error(e.message);
    if (e instanceof ApiError && e.status === 422 && e.field === "source" && role === "source") {
      this.source = this.previousSource || null;
      this.draw();
    }
    if (e instanceof ApiError && e.status === 422 && e.field === "receivers" && role === "listener") {
      this.listener = this.previousListener || this.listener;
      this.draw();
    }
  }

  async computeField() {
    const seq = ++this.seq.field;
    const g = this.grid;
    const receivers = this.dim === 3 ? g.points : { grid: { nx: g.nx, ny: g.ny } };
    this.ui.status("Computing the field…");
    let answer;
    try {
      answer = await postBundle(this.path("predict"), { source: this.source, receivers, times: this.times(FRAMES) });
    } catch (e) {
      if (seq === this.seq.field) this.refused(e, "source");
      return;
    }
    if (seq !== this.seq.field) return; // a newer request is on its way
    const p = answer.arrays.pressure;
    const [nr, nt] = p.shape;
    const index = this.dim === 3 ? g.index : Array.from(answer.arrays["grid.index"].data);
    const frames = [];
    for (let t = 0; t < nt; t++) {
      const values = new Float32Array(g.nx * g.ny).fill(NaN);
      for (let r = 0; r < nr; r++) values[index[r]] = p.data[r * nt + t];
      frames.push(values);
    }
    this.frameTimes = Array.from(answer.arrays.times.data);
    this.fixedScale = absQuantile(p.data, 0.995);
    this.frames = frames;
    this.frame = Math.min(this.frame, nt - 1);
    this.ui.report("field", answer, `${nr} cells × ${nt} times`);
    this.ui.warnings(answer.meta.warnings);
    this.ui.status("");
    // What is on the canvas, for whoever drives the page (the browser test waits on it).
    this.canvas.dataset.source = this.source.join(",");
    this.canvas.dataset.frames = String(nt);
    this.draw();
  }

  async computeIr() {
    const seq = ++this.seq.ir;
    let answer;
    try {
      answer = await postJson(this.path("predict"), { source: this.source, receivers: [this.listener], times: this.times(IR_STEPS) });
    } catch (e) {
      if (seq === this.seq.ir) this.refused(e, this.mode());
      return;
    }
    if (seq !== this.seq.ir) return;
    const body = answer.body;
    const t = body.times.map((v) => v * 1e3);
    const y = body.pressure[0];
    const c = this.domain.c || 343;
    const r = Math.hypot(...this.source.map((v, a) => v - this.listener[a]));
    linePlot(this.irCanvas, {
      series: [{ x: t, y, colour: "#1f4e8c" }],
      xlabel: "t (ms)",
      ylabel: "p at the listener (Pa)",
      markers: [{ x: (r / c) * 1e3, label: `direct sound r/c = ${fmt((r / c) * 1e3)} ms`, colour: "#b2182b" }],
    });
    this.irCanvas.dataset.drawn = `${this.source.join(",")} to ${this.listener.join(",")}`;
    this.ui.report("impulse response", { ...answer, meta: body }, `${y.length} times`);
  }

  async listen() {
    if (!this.source) return;
    // Created on the click (a user gesture), which is what lets a browser start audio.
    if (!this.audio) this.audio = new AudioContext();
    const ctx = this.audio;
    if (ctx.state !== "running") await ctx.resume();
    const state = (window.fieldserve.audio = { state: ctx.state, request: "pending" });
    this.listenButton.disabled = true;
    try {
      const answer = await call(this.path("impulse-response"), { body: { source: this.source, listener: this.listener }, accept: "audio/wav" });
      state.request = answer.response.status;
      const headers = answer.response.headers;
      this.ui.report("listen (WAV)", { ...answer, meta: { cache: headers.get("X-Fieldserve-Cache") } }, "impulse response");
      const ir = await ctx.decodeAudioData(answer.buffer.slice(0));
      const convolver = ctx.createConvolver();
      convolver.normalize = true; // the WAV is peak-scaled; this sets a listenable level
      convolver.buffer = ir;
      const dry = ctx.createBufferSource();
      dry.buffer = drySound(ctx, this.drySelect.value);
      const gain = ctx.createGain();
      gain.gain.value = 0.8;
      dry.connect(convolver).connect(gain).connect(ctx.destination);
      const fmax = headers.get("X-Fieldserve-Fmax-Hz");
      this.listenInfo.textContent = `${fmt(ir.duration * 1e3)} ms of room at ${fmt(Number(headers.get("X-Fieldserve-Sample-Rate-Hz")) / 1e3 || 48)} kHz${fmax ? `, band limit ${fmt(Number(fmax))} Hz` : ""}`;
      const started = ctx.currentTime;
      Object.assign(state, { irSeconds: ir.duration, irRate: ir.sampleRate, started });
      await new Promise((resolve) => {
        dry.onended = resolve;
        dry.start();
      });
      Object.assign(state, { state: ctx.state, played: ctx.currentTime - started });
    } catch (e) {
      state.request = e instanceof ApiError ? e.status : "failed";
      this.ui.error(e instanceof ApiError ? e.message : `could not play the impulse response: ${e.message}`);
    } finally {
      this.listenButton.disabled = false;
    }
  }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const [sx, sy] = this.room.size;
    const f = (this.frame2d = new Frame(this.canvas, [0, sx], [0, sy]));
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const rect = (b) => [f.px(b.lo[0]), f.py(b.hi[1]), (b.hi[0] - b.lo[0]) * f.s, (b.hi[1] - b.lo[1]) * f.s];
    const plan = this.room.plan(this.z.listener);
    ctx.fillStyle = "#8a8a8a"; // walls: whatever is not air
    ctx.fillRect(...rect({ lo: [0, 0], hi: [sx, sy] }));
    // Air is white until a field covers it; then light grey, so the slivers between the
    // field's edge cells and a wall's face do not read as 0 Pa.
    ctx.fillStyle = this.frames ? "#e4e4e4" : "#fff";
    for (const b of plan.air) ctx.fillRect(...rect(b));
    const g = this.grid;
    let scale = null;
    if (this.frames) {
      const values = this.frames[this.frame];
      scale = this.perFrame.checked ? absQuantile(values, 0.99) : this.fixedScale;
      scale = scale || 1e-12;
      drawField(f, values, [g.nx, g.ny], g.lo, g.hi, diverging, [-scale, scale]);
      const t = this.frameTimes[this.frame] * 1e3;
      this.timeLabel.textContent = `t = ${t.toFixed(1)} ms`;
    }
    ctx.font = "11px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const b of plan.solids) {
      // Solid where the plan cuts it; outlined (dashed) where it lies below or above the plan.
      if (b.cut) {
        ctx.fillStyle = "#8a8a8a";
        ctx.fillRect(...rect(b));
      } else {
        ctx.setLineDash([5, 4]);
        ctx.strokeStyle = "#666";
        ctx.strokeRect(...rect(b));
        ctx.setLineDash([]);
      }
      if (b.kind === "furniture") {
        ctx.fillStyle = b.cut ? "#fff" : "#444";
        const label = b.height !== null && !b.cut ? `${b.name} (to ${fmt(b.height)} m)` : b.name;
        ctx.fillText(label, f.px((b.lo[0] + b.hi[0]) / 2), f.py((b.lo[1] + b.hi[1]) / 2));
      }
    }
    const region = this.domain.source_region;
    ctx.setLineDash([2, 3]);
    ctx.strokeStyle = "#2a7";
    ctx.strokeRect(...rect(region));
    ctx.setLineDash([]);
    axes(f, "x (m)", "y (m)");
    if (scale !== null) colourBar(f, diverging, [-scale, scale], "Pa");
    this.marker(f, this.listener, "#1f4e8c", "L");
    if (this.source) this.marker(f, this.source, "#b2182b", "S");
  }

  marker(f, p, colour, letter) {
    const ctx = this.canvas.getContext("2d");
    ctx.save();
    ctx.fillStyle = colour;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(f.px(p[0]), f.py(p[1]), 8, 0, 2 * Math.PI);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.font = "bold 10px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(letter, f.px(p[0]), f.py(p[1]) + 0.5);
    ctx.restore();
  }

  // Where a click would place a point (tests and scripts drive the page with it).
  clientOf(point) {
    return this.frame2d.client(point);
  }
}
