// Shapes the page draws and the points it may ask for: rooms from a model's domain, NACA
// sections and two-element airfoils. The service is the authority (it refuses a point in a
// wall with a 422 naming it); these copies keep the page from asking for such points and let
// it draw what the model was trained on. They follow geometry/rooms.py, geometry/scenes.py,
// geometry/voxels.py and geometry/airfoils.py.

const EPS = 1e-9;

function box(spec, name = "", kind = "solid") {
  return { lo: spec.lo.map(Number), hi: spec.hi.map(Number), name, kind };
}

function inBox(p, b, strict) {
  for (let a = 0; a < p.length; a++) {
    if (strict ? !(p[a] > b.lo[a] + EPS && p[a] < b.hi[a] - EPS) : !(p[a] >= b.lo[a] - EPS && p[a] <= b.hi[a] + EPS)) {
      return false;
    }
  }
  return true;
}

function lShape(size, cut) {
  // The union of the slabs below the cut on each axis: everything but the far corner.
  return size.map((_, a) => ({
    lo: size.map(() => 0),
    hi: size.map((s, b) => (b === a ? s - cut[a] : s)),
  }));
}

async function unpackMask(text, counts) {
  // packbits+zlib+base64 (numpy packbits: most significant bit first), C order over counts.
  const raw = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const stream = new Blob([raw]).stream().pipeThrough(new DecompressionStream("deflate"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  const n = counts.reduce((a, b) => a * b, 1);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
  return mask;
}

export class Room {
  constructor({ size, air, solids, voxels = null, name = "room" }) {
    this.size = size;
    this.dim = size.length;
    this.air = air; // boxes whose union is the air before solids are taken out
    this.solids = solids; // walls and furniture inside the bounding box: {lo, hi, name, kind}
    this.voxels = voxels; // {counts, mask} for a voxelised mesh scene
    this.name = name;
  }

  static async fromDomain(domain) {
    const scene = domain.scene;
    if (scene && (scene.kind || "boxes") === "boxes") {
      const size = scene.size.map(Number);
      const air = scene.air || { shape: "box" };
      let airBoxes = [{ lo: size.map(() => 0), hi: size }];
      if (air.boxes) airBoxes = air.boxes.map((b) => box(b));
      else if (air.shape === "l_shape") airBoxes = lShape(size, air.cut.map(Number));
      const furniture = (scene.furniture || []).map((f, i) => box(f, f.name || `item ${i + 1}`, "furniture"));
      return new Room({ size, air: airBoxes, solids: furniture, name: scene.name });
    }
    if (scene && scene.kind === "voxels") {
      const size = scene.size.map(Number);
      const counts = scene.counts.map(Number);
      const mask = await unpackMask(scene.air, counts);
      return new Room({ size, air: [{ lo: size.map(() => 0), hi: size }], solids: [], voxels: { counts, mask }, name: scene.name });
    }
    const spec = domain.room;
    const size = spec.size.map(Number);
    const solids = (spec.solids || []).map((s, i) => box(s, s.name || `wall ${i + 1}`));
    if (spec.shape === "l_shape") {
      const cut = spec.cut.map(Number);
      solids.push(box({ lo: size.map((s, a) => s - cut[a]), hi: size }, "corner"));
    } else if (spec.shape === "obstacle") {
      solids.push(box(spec, "obstacle"));
    }
    return new Room({ size, air: [{ lo: size.map(() => 0), hi: size }], solids, name: spec.name });
  }

  // In the air, as the service judges it (points on a wall face are not).
  isAir(p) {
    if (!this.air.some((b) => inBox(p, b, true))) return false;
    if (this.solids.some((b) => inBox(p, b, false))) return false;
    if (this.voxels) {
      const { counts, mask } = this.voxels;
      let flat = 0;
      for (let a = 0; a < this.dim; a++) {
        const c = Math.floor((p[a] / this.size[a]) * counts[a]);
        if (c < 0 || c >= counts[a]) return false;
        flat = flat * counts[a] + c;
      }
      if (!mask[flat]) return false;
    }
    return true;
  }

  // Drawing the plan at height z (3-D) or the room (2-D): the bounding box, the air boxes cut
  // at z, and each solid with whether it reaches the plane (3-D furniture below or above it
  // is outlined only: a source may stand over a table).
  plan(z) {
    const cuts = (b) => this.dim < 3 || (z >= b.lo[2] && z <= b.hi[2]);
    return {
      air: this.air.filter(cuts).map((b) => ({ lo: b.lo.slice(0, 2), hi: b.hi.slice(0, 2) })),
      solids: this.solids.map((b) => ({
        lo: b.lo.slice(0, 2),
        hi: b.hi.slice(0, 2),
        name: b.name,
        kind: b.kind,
        cut: cuts(b),
        height: this.dim === 3 ? b.hi[2] : null,
      })),
    };
  }
}

// -- airfoils --------------------------------------------------------------------------------

const THICKNESS = [0.2969, -0.126, -0.3516, 0.2843, -0.1036];

export function parseNaca(code) {
  const match = /^\s*(?:naca)?[\s_-]*(\d+)\s*$/i.exec(code || "");
  if (!match) throw new Error(`NACA code "${code}" is not of the form 2412 or NACA 2412`);
  const d = match[1];
  if (d.length !== 4) throw new Error(`NACA code "${code}" has ${d.length} digits; only 4-digit sections are served`);
  const m = Number(d[0]) / 100;
  const p = Number(d[1]) / 10;
  const t = Number(d.slice(2)) / 100;
  if (t === 0) throw new Error(`NACA code "${code}" has zero thickness (last two digits)`);
  if (m > 0 && p === 0) throw new Error(`NACA code "${code}" has camber but no camber position (second digit 0)`);
  if (m === 0 && p > 0) throw new Error(`NACA code "${code}" places the camber but has none; symmetric sections are 00xx`);
  return { m, p, t };
}

// Closed clockwise polyline (n + 1 points) of a NACA 4-digit section of chord 1: lower surface
// trailing edge -> leading edge, then upper surface leading edge -> trailing edge.
export function naca4({ m, p, t }, n) {
  const half = n / 2;
  const [a0, a1, a2, a3, a4] = THICKNESS;
  const lower = [];
  const upper = [];
  for (let i = 0; i <= half; i++) {
    const x = 0.5 * (1 + Math.cos((Math.PI * i) / half));
    const yt = 5 * t * (a0 * Math.sqrt(x) + x * (a1 + x * (a2 + x * (a3 + x * a4))));
    let yc = 0;
    let dyc = 0;
    if (m > 0) {
      if (x < p) {
        yc = (m / p ** 2) * (2 * p * x - x * x);
        dyc = ((2 * m) / p ** 2) * (p - x);
      } else {
        yc = (m / (1 - p) ** 2) * (1 - 2 * p + 2 * p * x - x * x);
        dyc = ((2 * m) / (1 - p) ** 2) * (p - x);
      }
    }
    const th = Math.atan(dyc);
    lower.push([x + yt * Math.sin(th), yc - yt * Math.cos(th)]);
    upper.push([x - yt * Math.sin(th), yc + yt * Math.cos(th)]);
  }
  upper.reverse();
  const poly = [...lower, ...upper.slice(1)];
  poly[poly.length - 1] = poly[0].slice();
  return poly;
}

function cross(o, u, v) {
  return (u[0] - o[0]) * (v[1] - o[1]) - (u[1] - o[1]) * (v[0] - o[0]);
}

function polylinesIntersect(p, q) {
  for (let i = 0; i + 1 < p.length; i++) {
    for (let j = 0; j + 1 < q.length; j++) {
      const d1 = cross(q[j], q[j + 1], p[i]);
      const d2 = cross(q[j], q[j + 1], p[i + 1]);
      const d3 = cross(p[i], p[i + 1], q[j]);
      const d4 = cross(p[i], p[i + 1], q[j + 1]);
      if (d1 * d2 <= 0 && d3 * d4 <= 0) return true;
    }
  }
  return false;
}

function distanceTo(pt, poly) {
  let best = Infinity;
  for (let i = 0; i + 1 < poly.length; i++) {
    const [ax, ay] = poly[i];
    const bx = poly[i + 1][0] - ax;
    const by = poly[i + 1][1] - ay;
    let w = ((pt[0] - ax) * bx + (pt[1] - ay) * by) / Math.max(bx * bx + by * by, 1e-300);
    w = Math.min(1, Math.max(0, w));
    best = Math.min(best, Math.hypot(pt[0] - ax - w * bx, pt[1] - ay - w * by));
  }
  return best;
}

export function insidePolygon(pt, poly) {
  let inside = false;
  for (let i = 0; i + 1 < poly.length; i++) {
    const [ax, ay] = poly[i];
    const [bx, by] = poly[i + 1];
    if (ay > pt[1] !== by > pt[1] && pt[0] < ax + ((pt[1] - ay) * (bx - ax)) / (by - ay)) inside = !inside;
  }
  return inside;
}

export function insideAny(pt, polys) {
  return polys.some((poly) => insidePolygon(pt, poly));
}

// Main section + slotted flap, as geometry.airfoils.two_element: the flap scaled to its chord,
// rotated about its leading edge (positive = trailing edge down), its leading edge `overlap`
// ahead of the main trailing edge, then lowered until the slot is `gap` wide.
export function twoElement(main, flap, flapChord, deflectionDeg, gap, n, overlap = 0) {
  const mainChord = 1 - flapChord;
  const body = naca4(main, n).map(([x, y]) => [x * mainChord, y * mainChord]);
  const te = body[0];
  const a = (-deflectionDeg * Math.PI) / 180;
  const c = Math.cos(a);
  const s = Math.sin(a);
  const shape = naca4(flap, n).map(([x, y]) => {
    const fx = x * flapChord;
    const fy = y * flapChord;
    return [c * fx - s * fy + te[0] - overlap, s * fx + c * fy + te[1]];
  });
  const moved = (drop) => shape.map(([x, y]) => [x, y - drop]);
  const clearance = (drop) => {
    const f = moved(drop);
    if (polylinesIntersect(body, f) || insidePolygon(f[0], body)) return -1;
    let d = Infinity;
    for (const pt of f) d = Math.min(d, distanceTo(pt, body));
    for (const pt of body) d = Math.min(d, distanceTo(pt, f));
    return d;
  };
  const step = 0.25 * gap;
  let lo = 0;
  let hi = step;
  while (clearance(hi) < gap) {
    lo = hi;
    hi += step;
    if (hi > 2) throw new Error("could not place the flap below the main element");
  }
  for (let i = 0; i < 40; i++) {
    const mid = 0.5 * (lo + hi);
    if (clearance(mid) < gap) lo = mid;
    else hi = mid;
  }
  return [body, moved(hi)];
}

// Points `offset` outside each body along its outward normal, for surface Cp: the service
// refuses points inside a body (422), and the model was not trained nearer the wall than
// domain.min_wall_distance. Each point keeps the x of its surface vertex and which surface it
// is on (naca4 order: lower half first). The sharp trailing edge has no normal; it is skipped.
export function surfaceProbes(polys, offset) {
  const probes = [];
  polys.forEach((poly, element) => {
    const n = poly.length - 1;
    const xs = poly.map((q) => q[0]);
    const te = Math.max(...xs);
    const le = Math.min(...xs);
    for (let i = 1; i < n; i++) {
      const [px, py] = poly[i - 1];
      const [nx, ny] = poly[i + 1];
      let ux = -(ny - py);
      let uy = nx - px;
      const len = Math.hypot(ux, uy) || 1;
      ux /= len;
      uy /= len;
      let q = [poly[i][0] + offset * ux, poly[i][1] + offset * uy];
      if (insideAny(q, polys)) q = [poly[i][0] - offset * ux, poly[i][1] - offset * uy];
      if (insideAny(q, polys) || (poly[i][0] - le) / (te - le) > 0.985) continue;
      probes.push({ point: q, x: poly[i][0], element, upper: i > n / 2 });
    }
  });
  return probes;
}
