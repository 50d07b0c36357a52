// The page's frame: the API key, the model picker (GET /v1/models), the view for the chosen
// model's family, answers' latency and cache state, errors in words.

import { ApiError, apiKey, getJson, kb, setApiKey } from "./api.js";
import { AcousticsView } from "./acoustics.js";
import { AirfoilView } from "./airfoil.js";
import { el, fmt } from "./draw.js";
import { GenericView } from "./generic.js";

const $ = (id) => document.getElementById(id);

// Which view draws which (family, task); anything else gets the generic field plot.
function viewFor(model) {
  if (model.family === "deeponet" && model.task === "acoustics") return AcousticsView;
  if (model.family === "enf2enf" && model.task === "airfoil-flow") return AirfoilView;
  return GenericView;
}

const rows = new Map();

const ui = {
  // One row per kind of answer: round trip as the browser saw it, the service's cache state.
  report(label, answer, what) {
    let row = rows.get(label);
    if (!row) {
      const head = el("th", {}, label, el("br"), el("small", { class: "what" }));
      row = el("tr", {}, head, el("td", { class: "ms" }), el("td", { class: "cache" }));
      rows.set(label, row);
      $("latency").append(row);
    }
    const [head, ms, cache] = row.children;
    const what_ = head.querySelector(".what");
    ms.textContent = `${answer.ms.toFixed(answer.ms < 10 ? 1 : 0)} ms`;
    const state = (answer.meta && answer.meta.cache) || "?";
    cache.textContent = state;
    cache.className = `cache ${state}`;
    what_.textContent = [kb(answer.bytes), what].filter(Boolean).join(", ");
    $("error").hidden = true;
  },
  error(message) {
    $("error").textContent = message;
    $("error").hidden = false;
    ui.status("");
  },
  status(text) {
    $("status").textContent = text;
  },
  warnings(list) {
    $("warnings").replaceChildren(...(list || []).map((w) => el("li", {}, `${w.code}: ${w.message}`)));
  },
};

const state = (window.fieldserve = { ui, view: null, audio: null, models: [] });

async function show(name) {
  if (state.view) state.view.unmount();
  state.view = null;
  rows.clear();
  $("latency").replaceChildren();
  $("warnings").replaceChildren();
  $("view").replaceChildren();
  $("error").hidden = true;
  let model;
  try {
    model = (await getJson(`v1/models/${encodeURIComponent(name)}`)).body;
  } catch (e) {
    ui.error(e.message);
    return;
  }
  const rel = model.metrics && model.metrics.rel_l2;
  const accuracy = typeof rel === "number" ? `held-out rel. L2 ${fmt(rel)}` : rel && typeof rel === "object" ? `held-out rel. L2 ${Object.entries(rel).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}` : "";
  $("about").textContent = `${model.description || model.task} — version ${model.version}, ${model.family}, on ${model.provider}${accuracy ? `; ${accuracy}` : ""}`;
  const View = viewFor(model);
  const view = new View(model, ui);
  state.view = view;
  const root = el("section", { class: "view" });
  $("view").append(root);
  try {
    await view.mount(root);
  } catch (e) {
    ui.error(`the page could not draw this model: ${e.message}`);
  }
  document.body.dataset.model = name;
}

async function loadModels() {
  let models;
  try {
    models = (await getJson("v1/models")).body.models;
  } catch (e) {
    ui.error(e.message);
    if (e instanceof ApiError && e.status === 401) $("api-key").focus();
    return;
  }
  state.models = models;
  const picker = $("model");
  picker.replaceChildren(...models.map((m) => el("option", { value: m.name }, `${m.name} (v${m.version}, ${m.task})`)));
  if (!models.length) {
    ui.error("the service serves no model yet");
    return;
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("model");
  const first = models.find((m) => m.name === wanted) || models.find((m) => viewFor(m) === AcousticsView) || models[0];
  picker.value = first.name;
  await show(first.name);
}

$("model").addEventListener("change", () => {
  history.replaceState(null, "", `#model=${encodeURIComponent($("model").value)}`);
  show($("model").value);
});
$("api-key").value = apiKey();
$("api-key").addEventListener("change", () => {
  setApiKey($("api-key").value.trim());
  loadModels();
});
loadModels();
