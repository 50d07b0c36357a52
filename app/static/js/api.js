// Talking to the service: the API key, timing, cache state, binary bundles, errors in words.

const KEY = "fieldserve.apiKey";
export const BUNDLE = "application/x-fieldserve-arrays";

export function apiKey() {
  return localStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  // Kept in this browser only (localStorage), so a reload does not ask again.
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

// What a status means to someone looking at the page, before the service's own words.
const HINTS = {
  400: "the request is malformed",
  401: "this service needs an API key: type it into the key field at the top",
  403: "the key sent may not use this route",
  404: "not found",
  406: "the service cannot answer in the format asked for",
  408: "the request took too long to arrive",
  413: "the request is too large",
  422: "the request was refused",
  503: "the service is busy or not ready; try again in a moment",
};

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

async function errorFrom(response, buffer) {
  let error = "";
  let field = null;
  try {
    const body = JSON.parse(new TextDecoder().decode(buffer));
    error = body.error || "";
    field = body.field || null;
  } catch {
    error = response.statusText;
  }
  const hint = HINTS[response.status] || "the service answered an error";
  const where = field ? ` (field "${field}")` : "";
  const words = `${response.status}: ${hint}${error ? ` — ${error}` : ""}${where}`;
  return new ApiError(response.status, words, field);
}

// One call: {response, buffer, ms, bytes}; ms is the round trip as this browser saw it, body
// included. Relative paths, so the page also works when mounted under a proxy prefix.
export async function call(path, { body, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  const init = { method: body === undefined ? "GET" : "POST", headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const t0 = performance.now();
  let response;
  let buffer;
  try {
    response = await fetch(path, init);
    buffer = await response.arrayBuffer();
  } catch (e) {
    throw new ApiError(0, `the service did not answer (${e.message})`, null);
  }
  const ms = performance.now() - t0;
  if (!response.ok) throw await errorFrom(response, buffer);
  return { response, buffer, ms, bytes: buffer.byteLength };
}

export async function getJson(path) {
  const r = await call(path);
  return { ...r, body: JSON.parse(new TextDecoder().decode(r.buffer)) };
}

export async function postJson(path, body) {
  const r = await call(path, { body });
  return { ...r, body: JSON.parse(new TextDecoder().decode(r.buffer)) };
}

// A binary answer (README "Binary answers"): b"FSA\x01", a uint32 header length, a JSON
// header, then raw little-endian arrays at 8-byte aligned offsets. Typed arrays view the
// buffer without copying (every browser this runs on is little-endian).
const VIEWS = {
  "<f4": Float32Array,
  "<f8": Float64Array,
  "<i4": Int32Array,
  "<u4": Uint32Array,
  "<i2": Int16Array,
  "<u2": Uint16Array,
  "|i1": Int8Array,
  "|u1": Uint8Array,
  "|b1": Uint8Array,
};

export function decodeBundle(buffer) {
  const view = new DataView(buffer);
  const magic = String.fromCharCode(...new Uint8Array(buffer, 0, 3));
  if (magic !== "FSA" || view.getUint8(3) !== 1) throw new Error("not a fieldserve bundle");
  const length = view.getUint32(4, true);
  const meta = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 8, length)));
  const start = 8 + length;
  const arrays = {};
  for (const a of meta.arrays) {
    const count = a.shape.reduce((n, d) => n * d, 1);
    let data;
    if (a.dtype === "<i8" || a.dtype === "<u8") {
      // Indices: exact in a double far beyond any grid the service answers.
      const big = new BigInt64Array(buffer, start + a.offset, count);
      data = Float64Array.from(big, Number);
    } else {
      const View = VIEWS[a.dtype];
      if (!View) throw new Error(`array ${a.name} has dtype ${a.dtype}, which the page cannot read`);
      data = new View(buffer, start + a.offset, count);
    }
    arrays[a.name] = { data, shape: a.shape };
  }
  delete meta.arrays;
  return { meta, arrays };
}

export async function postBundle(path, body) {
  const r = await call(path, { body, accept: BUNDLE });
  return { ...r, ...decodeBundle(r.buffer) };
}

export function kb(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} kB`;
}

// At most one call of fn in flight: a call asked for meanwhile runs once, after it, with the
// state of that moment. Dragging a slider then costs the service one request at a time, not
// one per pixel, and the newest position is always the last one answered.
export function coalesce(fn) {
  let busy = false;
  let again = false;
  const run = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
      if (again) {
        again = false;
        run();
      }
    }
  };
  return run;
}
