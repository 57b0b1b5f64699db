// The demo page: UI only. It uses the npm package `zeroprune` (web/pkg, built by
// scripts/build-web.sh) as an application would, through its worker: every model computation
// (download, parsing, decoding, tokenising, the GPU) runs in the package's worker, in the same
// Rust code as the native binary, and the page's main thread stays free.
import { createWorker } from "zeroprune";

const $ = (id) => document.getElementById(id);
const SAMPLES = [
  ["cat.jpg", "Cat"],
  ["coffee.jpg", "Coffee"],
  ["rocket.jpg", "Rocket launch"],
  ["astronaut.jpg", "Astronaut"],
];
const LOCAL_MODEL = "models/deit-tiny-patch16-224/";
const HUB_MODEL = "https://huggingface.co/timm/deit_tiny_patch16_224.fb_in1k/resolve/main/";
// WebGPU limits the kernels rely on (WebGPU's defaults; compatibility-mode adapters may offer less).
const NEEDED_LIMITS = {
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxStorageBuffersPerShaderStage: 8,
};

// State the end-to-end test reads: window.zeroprune.{state, info, last, error}.
const app = { zp: null, limits: null, reload: null, session: null, info: null, adapter: null, image: null, imageName: null, last: null, error: null, state: "starting" };
window.zeroprune = app;
// The text panel's state, which the end-to-end test reads: {state, result, error}.
app.text = { model: null, state: "idle", result: null, error: null };
const TEXT_MODELS = ["models/all-minilm-l6-v2/", "https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2/resolve/main/"];
let busy = false;
let rerun = false;

function setState(s) {
  app.state = s;
  document.body.dataset.state = s;
}

function fatal(html) {
  const el = $("fatal");
  el.innerHTML = html;
  el.hidden = false;
  setState("unsupported");
}

async function checkWebGpu() {
  if (!("gpu" in navigator)) {
    fatal(`<strong>WebGPU is not available in this browser.</strong> Use a recent Chrome, Edge or Safari
      (or Firefox with WebGPU enabled), over https or on localhost. Headless Chromium needs
      <code>--enable-unsafe-webgpu</code>.`);
    return null;
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    fatal(`<strong>WebGPU is present but gave no adapter.</strong> The GPU may be blocklisted or disabled;
      check <code>chrome://gpu</code>.`);
    return null;
  }
  const short = Object.entries(NEEDED_LIMITS).filter(([k, v]) => (adapter.limits[k] ?? 0) < v);
  if (short.length) {
    fatal(`<strong>This GPU adapter lacks a limit the kernels need:</strong> ` +
      short.map(([k, v]) => `<code>${k}</code> is ${adapter.limits[k]}, need ${v}`).join("; "));
    return null;
  }
  const i = adapter.info || {};
  return [i.vendor, i.architecture, i.description].filter(Boolean).join(" ") || "WebGPU adapter";
}

// ---- model loading -------------------------------------------------------------------------------

// Where the weights came from, for the status line: this browser's storage after the first visit
// (the package keeps a model fetched by URL), else a download that was kept (or why it was not).
function storageNote(loaded) {
  app.storage = loaded;
  if (!loaded) return "";
  if (loaded.fromStorage) return " Weights read from this browser's storage (no download).";
  if (loaded.stored) return " Weights kept in this browser's storage for the next visit.";
  return loaded.storeError ? ` Weights not kept for the next visit: ${loaded.storeError.message}.` : "";
}

// A file over the library's limit is refused before it is read (the wasm memory is 4 GiB in all).
function tooBig(name, bytes, max, what) {
  if (bytes > max) {
    const mb = (n) => `${(n / 2 ** 20).toFixed(0)} MiB`;
    throw new Error(`${name}: ${mb(bytes)} is over the limit of ${mb(max)} for ${what}`);
  }
}

// `source`: a URL or the files' contents, as the worker's loadImageModel takes it.
async function loadModel(source, name) {
  if (busy) return;
  if (typeof source === "string") app.reload = () => loadModel(source, name);
  let loaded = false;
  busy = true;
  setState("loading");
  const progress = $("model-progress");
  progress.hidden = false;
  progress.value = 0;
  $("model-status").textContent = `Loading ${name}…`;
  $("run").disabled = true;
  app.storage = null;
  try {
    const t = performance.now();
    // The old model stays until the new one is made: a bad file leaves the page working.
    const next = await app.zp.loadImageModel(source, {
      precision: $("precision").value,
      onProgress: (p) => {
        progress.value = p.loaded / p.total;
        if (p.loaded === p.total) $("model-status").textContent = `Uploading ${(p.total / 1e6).toFixed(1)} MB of weights to the GPU…`;
      },
    });
    if (app.session) app.session.dispose();
    app.session = next;
    app.info = next.info;
    const i = app.info;
    fillPolicies(i.policies, recommendedAt(i.recommended, Number($("target").value)));
    $("model-status").textContent =
      `${name}: ${(i.parameters / 1e6).toFixed(1)} M parameters, ${i.depth} blocks, ${i.heads} heads, ` +
      `${i.grid[0]}×${i.grid[1]} patches, ${i.denseGflops.toFixed(2)} GFLOPs dense; ready in ` +
      `${((performance.now() - t) / 1e3).toFixed(1)} s (kernels measured on this adapter: GEMM ` +
      `${i.gemmKernel}, ${i.fusedAttention ? "fused" : "unfused"} attention; weights stored as ${i.storage}).` +
      storageNote(next.loaded);
    $("run").disabled = false;
    $("closest-run").disabled = false;
    setState("ready");
    loaded = true;
  } catch (e) {
    showError($("model-status"), e);
  } finally {
    progress.hidden = true;
    busy = false;
  }
  // Only a new model reruns the image (after a failed load, the error stays on screen).
  if (loaded && app.image) classify();
}

function loadFromUrl(url) {
  return loadModel(url, url);
}

async function loadFromFiles(files) {
  const list = [...files];
  const weights = list.find((f) => f.name.endsWith(".safetensors"));
  const config = list.find((f) => f.name.endsWith(".json"));
  if (!weights) {
    showError($("model-status"), new Error("pick a .safetensors file (and optionally its config.json)"));
    return;
  }
  try {
    tooBig(weights.name, weights.size, app.limits.maxModelFileBytes, "a model file in the browser");
  } catch (e) {
    showError($("model-status"), e);
    return;
  }
  // The bytes move to the worker; a reload reads the files again.
  const read = async () => ({ model: await weights.arrayBuffer(), config: config ? await config.text() : undefined });
  const name = weights.name + (config ? ` + ${config.name}` : "");
  app.reload = async () => loadModel(await read(), name);
  return loadModel(await read(), name);
}

// ---- images --------------------------------------------------------------------------------------

async function setImage(bytes, name) {
  app.image = bytes;
  app.imageName = name;
  document.querySelectorAll(".samples button").forEach((b) => b.classList.toggle("chosen", b.dataset.name === name));
  if (app.session) classify();
}

function setupImages() {
  const box = $("samples");
  for (const [file, label] of SAMPLES) {
    const b = document.createElement("button");
    b.className = "sample";
    b.dataset.name = file;
    b.title = label;
    b.innerHTML = `<img src="samples/${file}" alt="${label}"><span>${label}</span>`;
    b.onclick = async () => setImage(new Uint8Array(await (await fetch(`samples/${file}`)).arrayBuffer()), file);
    box.appendChild(b);
  }
  const drop = $("drop");
  const take = async (file) => {
    if (!file) return;
    try {
      tooBig(file.name, file.size, app.limits.maxImageFileBytes, "an image file");
    } catch (e) {
      showError($("run-status"), e);
      return;
    }
    setImage(new Uint8Array(await file.arrayBuffer()), file.name);
  };
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    take(e.dataTransfer.files[0]);
  });
  $("image-file").addEventListener("change", (e) => take(e.target.files[0]));
}

// ---- pruning controls ----------------------------------------------------------------------------

// The library's recommended policy at the FLOPs level nearest to `flops`.
function recommendedAt(levels, flops) {
  return levels.reduce((a, b) => (Math.abs(b.flops - flops) < Math.abs(a.flops - flops) ? b : a)).policy;
}

// The policy list comes from the library's registry: each entry has its name, help, keep rule and
// default blocks for this model. The first choice is the library's recommended policy.
function fillPolicies(policies, recommended) {
  const select = $("policy");
  const chosen = select.value || recommended;
  select.replaceChildren(...policies.map((p) => {
    const o = document.createElement("option");
    o.value = p.name;
    o.textContent = p.name === "none" ? "none (dense)" : p.name;
    o.title = p.help;
    return o;
  }));
  select.value = policies.some((p) => p.name === chosen) ? chosen : recommended;
  syncTarget();
}

// The chosen policy's facts, or undefined before a model is loaded.
function policyInfo() {
  return app.info?.policies.find((p) => p.name === $("policy").value);
}

function isThreshold() {
  return policyInfo()?.keep_rule === "threshold";
}

function options() {
  const policy = $("policy").value;
  const v = Number($("target").value);
  const o = { policy, compareDense: $("compare").checked && policy !== "none", top: 5, name: app.imageName };
  if (isThreshold()) o.threshold = `${v}@${policyInfo().default_blocks.join(",")}`;
  else if (policy !== "none") o.flops = v;
  return o;
}

function syncTarget() {
  const policy = $("policy").value;
  const threshold = isThreshold();
  const t = $("target");
  // A threshold policy's slider spans 0 to 4x its default threshold (0.5 for threshold, a key
  // distance of 0.14 for zero-tprune-adaptive).
  const theta = policyInfo()?.default_threshold;
  if (threshold && t.dataset.mode !== `threshold ${theta}`) {
    Object.assign(t, { min: "0", max: String(4 * theta), step: String(theta / 10) });
    t.value = String(theta);
    t.dataset.mode = `threshold ${theta}`;
  } else if (!threshold && t.dataset.mode?.startsWith("threshold")) {
    Object.assign(t, { min: "0.40", max: "1.00", step: "0.05" });
    t.value = "0.65";
    t.dataset.mode = "flops";
  }
  $("target-label").textContent = threshold ? "Threshold θ" : "FLOPs target";
  $("target-value").textContent = threshold ? `θ = ${Number(t.value).toFixed(3)}` : `${Math.round(t.value * 100)}% of dense`;
  $("target-row").classList.toggle("off", policy === "none");
}

// ---- running and drawing -------------------------------------------------------------------------

async function classify() {
  if (!app.session || !app.image) return;
  if (busy) {
    rerun = true;
    return;
  }
  busy = true;
  setState("running");
  const o = options();
  $("run-status").textContent = `Running ${o.policy === "none" ? "the dense model" : o.policy}${o.compareDense ? " and dense" : ""} on ${app.imageName}…`;
  try {
    const r = await app.session.classify(app.image, o);
    app.last = { ...r, image: app.imageName, options: o };
    render(r);
    $("run-status").textContent = r.policy === "none"
      ? `${app.imageName}: the dense model, all ${r.grid[0] * r.grid[1]} patch tokens in every block.`
      : `${app.imageName}: ${r.policy} at blocks ${r.steps.map((s) => s.block).join(", ")}, keeping ` +
        `${r.steps.map((s) => s.kept.length).join(" → ")} of ${r.grid[0] * r.grid[1]} patch tokens.`;
    setState("done");
  } catch (e) {
    showError($("run-status"), e);
    if (/GPU device lost/.test(app.error)) deviceLost();
  } finally {
    busy = false;
  }
  if (rerun) {
    rerun = false;
    classify();
  }
}

function renderRun(box, run, title) {
  box.hidden = !run;
  if (!run) return;
  box.querySelector("h3").textContent = title;
  box.querySelector(".metrics").innerHTML =
    `<span class="big">${run.latencyMs.toFixed(1)} ms</span> · ${run.gflops.toFixed(2)} GFLOPs`;
  box.querySelector(".top5").innerHTML = run.top
    .map((t) => `<li><span class="label">${escapeHtml(t.name)}</span>` +
      `<span class="bar"><span style="width:${(t.probability * 100).toFixed(1)}%"></span></span>` +
      `<span class="prob">${(t.probability * 100).toFixed(1)}%</span></li>`)
    .join("");
}

function render(r) {
  renderRun($("result-dense"), r.dense, "Dense");
  renderRun($("result-pruned"), r, r.policy === "none" ? "Dense" : `Pruned: ${r.policy}`);
  const same = r.dense && r.dense.top[0].class === r.top[0].class;
  $("speedup").innerHTML = r.dense
    ? `<strong>${r.speedup.toFixed(2)}×</strong> faster with ${(r.flopsRatio * 100).toFixed(0)}% of the FLOPs; ` +
      (same ? "same top-1 class." : `<span class="warn">top-1 changed</span> (dense: ${escapeHtml(r.dense.top[0].name)}).`)
    : `${(r.flopsRatio * 100).toFixed(0)}% of the dense FLOPs.`;
  drawTokens(r);
}

function drawTokens(r) {
  const box = $("tokens");
  box.innerHTML = "";
  const [h, w] = r.imageSize;
  const rgba = new ImageData(new Uint8ClampedArray(r.inputRgba), w, h);
  const [gh, gw] = r.grid;
  const ph = h / gh, pw = w / gw;
  const panels = [{ title: "input", kept: null }, ...r.steps.map((s) => ({ title: `block ${s.block}`, kept: s.kept }))];
  for (const p of panels) {
    const fig = document.createElement("figure");
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const g = c.getContext("2d");
    g.putImageData(rgba, 0, 0);
    if (p.kept) {
      const keep = new Set(p.kept);
      g.fillStyle = "rgba(15, 17, 26, 0.78)";
      for (let i = 0; i < gh * gw; i++) {
        if (!keep.has(i)) g.fillRect((i % gw) * pw, Math.floor(i / gw) * ph, pw, ph);
      }
    }
    const cap = document.createElement("figcaption");
    cap.textContent = p.kept ? `${p.title}: ${p.kept.length} / ${gh * gw}` : `${p.title} (${w}×${h})`;
    fig.append(c, cap);
    box.appendChild(fig);
  }
}

function showError(el, e) {
  const msg = e && e.message ? e.message : String(e);
  app.error = msg;
  el.innerHTML = `<span class="error">Error: ${escapeHtml(msg)}</span>`;
  setState("error");
}

// The GPU device is gone (a driver reset, a removed GPU, the tab's GPU process restarted): the
// session cannot run again. Say so, and offer to load the model again on a new device.
function deviceLost() {
  app.session?.dispose().catch(() => { /* already unusable */ });
  app.session = null;
  $("run").disabled = true;
  const el = $("run-status");
  el.innerHTML += ` <button id="reload-model" type="button">Load the model again</button>`;
  $("model-status").textContent = "The GPU device was lost; the model must be loaded again.";
  $("reload-model").onclick = () => app.reload && app.reload();
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

// ---- image embeddings ----------------------------------------------------------------------------

// The samples ranked by the cosine of their embeddings to the chosen image's (the model's pooled
// embedding, as `zeroprune embed` gives it), under the chosen pruning, with each image's cosine
// to its dense embedding.
async function closestSample() {
  if (!app.session || !app.image || busy) return;
  busy = true;
  const el = $("closest");
  el.textContent = "Embedding the image and the samples…";
  try {
    const samples = await Promise.all(SAMPLES.map(async ([f]) => new Uint8Array(await (await fetch(`samples/${f}`)).arrayBuffer())));
    const { policy, flops, threshold } = options();
    const request = policy === "none" ? {} : { policy, flops, threshold };
    const r = await app.session.embed([app.image, ...samples], request);
    const ranked = SAMPLES
      .map(([file, label], i) => ({ file, label, cosine: cosineOf(r.embeddings[0], r.embeddings[i + 1]) }))
      .sort((a, b) => b.cosine - a.cosine);
    app.closest = { image: app.imageName, policy: r.policy, ranked, cosineToDense: r.cosineToDense };
    const kept = r.cosineToDense
      ? ` (${escapeHtml(r.policy)}: the image's embedding at cosine ${r.cosineToDense[0].toFixed(4)} to its dense one)`
      : "";
    el.innerHTML = ranked
      .map((x) => `<li>${escapeHtml(x.label)}: cosine ${x.cosine.toFixed(4)}</li>`)
      .join("") + `<li class="note">${escapeHtml(app.imageName)}${kept}</li>`;
  } catch (e) {
    showError(el, e);
  } finally {
    busy = false;
  }
}

// ---- text ----------------------------------------------------------------------------------------

// The text panel's policies, from the library's registry (names and help; a text model's default
// blocks are known once it loads): ToMe first, as it keeps the most of the embedding on text.
async function fillTextPolicies() {
  const list = (await app.zp.policies(6)).policies.filter((p) => p.name !== "none");
  const select = $("text-policy");
  select.replaceChildren(...list.map((p) => {
    const o = document.createElement("option");
    o.value = p.name;
    o.textContent = p.name;
    o.title = p.help;
    return o;
  }), Object.assign(document.createElement("option"), { value: "none", textContent: "none (dense only)" }));
  select.value = "tome";
}

// The sentence encoder's folder: beside the page where served, else the hub.
async function loadTextModel(status) {
  let dir = TEXT_MODELS[1];
  const local = await fetch(TEXT_MODELS[0] + "config.json", { method: "HEAD" }).then((r) => r.ok).catch(() => false);
  if (local) dir = TEXT_MODELS[0];
  status.textContent = `Loading the text model from ${dir}…`;
  return app.zp.loadTextModel(dir);
}

function cosineOf(a, b) {
  const dot = a.reduce((s, x, i) => s + x * b[i], 0);
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return dot / (norm(a) * norm(b));
}

// One sentence's tokens at one pruning step: kept tokens plain, pruned ones shaded.
function keptHtml(pieces, kept) {
  const keep = new Set(kept);
  return pieces.map((p, i) => {
    const stays = i === 0 || i === pieces.length - 1 || keep.has(i);
    return `<span class="${stays ? "kept" : "pruned"}">${escapeHtml(p)}</span>`;
  }).join(" ");
}

async function compareTexts() {
  const status = $("text-status");
  if (app.text.state === "running") return;
  app.text.state = "running";
  app.text.error = null;
  $("text-run").disabled = true;
  $("text-pruned").textContent = "";
  $("text-kept").innerHTML = "";
  try {
    if (!app.text.model) app.text.model = await loadTextModel(status);
    const texts = [$("text-a").value, $("text-b").value];
    status.textContent = "Running…";
    const r = await app.text.model.embed(texts);
    const cosine = cosineOf(r.embeddings[0], r.embeddings[1]);
    app.text.result = { cosine, tokens: r.tokens, truncated: r.truncated, latencyMs: r.latencyMs, gflops: r.gflopsPerText };
    status.innerHTML = `Dense: cosine similarity <strong>${cosine.toFixed(4)}</strong> · ${r.tokens[0]} and ${r.tokens[1]} tokens` +
      `${r.truncated.some(Boolean) ? " (cut to the model's length)" : ""} · ${r.latencyMs.toFixed(0)} ms · ` +
      `${(r.gflopsPerText[0] + r.gflopsPerText[1]).toFixed(2)} GFLOPs`;
    const policy = $("text-policy").value;
    if (policy !== "none") {
      const flops = Number($("text-target").value);
      const p = await app.text.model.embed(texts, { policy, flops });
      const pc = cosineOf(p.embeddings[0], p.embeddings[1]);
      const share = (p.gflopsPerText[0] + p.gflopsPerText[1]) / (r.gflopsPerText[0] + r.gflopsPerText[1]);
      app.text.pruned = { cosine: pc, policy: p.policy, kept: p.kept, pieces: p.pieces, latencyMs: p.latencyMs,
        embeddings: p.embeddings, flopsShare: share };
      $("text-pruned").innerHTML = `Pruned (${escapeHtml(p.policy)}): cosine similarity <strong>${pc.toFixed(4)}</strong> · ` +
        `${(100 * share).toFixed(0)}% of the dense FLOPs · ${p.latencyMs.toFixed(0)} ms`;
      $("text-kept").innerHTML = p.pieces.map((pieces, t) =>
        `<div class="sentence"><strong>Sentence ${"AB"[t]}</strong>` +
        p.kept[t].map((k, s) => `<div class="step">step ${s + 1}: ${keptHtml(pieces, k)}</div>`).join("") +
        "</div>").join("");
    } else {
      app.text.pruned = null;
    }
    app.text.state = "done";
  } catch (e) {
    app.text.error = e && e.message ? e.message : String(e);
    status.innerHTML = `<span class="error">Error: ${escapeHtml(app.text.error)}</span>`;
    app.text.state = "error";
  } finally {
    $("text-run").disabled = false;
  }
}

// ---- start ---------------------------------------------------------------------------------------

async function main() {
  setupImages();
  syncTarget();
  $("policy").addEventListener("change", () => { syncTarget(); classify(); });
  $("target").addEventListener("input", syncTarget);
  $("target").addEventListener("change", classify);
  $("compare").addEventListener("change", classify);
  $("run").addEventListener("click", classify);
  $("url-form").addEventListener("submit", (e) => { e.preventDefault(); loadFromUrl($("model-url").value.trim()); });
  $("model-files").addEventListener("change", (e) => loadFromFiles(e.target.files));
  $("text-run").addEventListener("click", compareTexts);
  $("closest-run").addEventListener("click", closestSample);

  const adapter = await checkWebGpu();
  if (!adapter) {
    $("gpu-status").textContent = "WebGPU unavailable.";
    return;
  }
  app.adapter = adapter;
  $("gpu-status").textContent = `WebGPU adapter: ${adapter}`;
  try {
    app.zp = await createWorker();
    app.limits = await app.zp.limits();
    await fillTextPolicies();
  } catch (e) {
    fatal(`<strong>Could not start the zeroprune package</strong> (<code>pkg/</code>):
      ${escapeHtml(e.message || e)}. Build it with <code>scripts/build-web.sh</code>.`);
    return;
  }
  setState("idle");
  // A model folder served beside the page (web/serve.py serves ../shared/models) loads at once.
  const local = await fetch(LOCAL_MODEL + "config.json", { method: "HEAD" }).then((r) => r.ok).catch(() => false);
  $("model-url").value = local ? LOCAL_MODEL : HUB_MODEL;
  if (new URLSearchParams(location.search).get("autoload") !== "0" && local) {
    await loadFromUrl(LOCAL_MODEL);
  }
  if (!app.image && new URLSearchParams(location.search).get("sample") !== "0") {
    document.querySelector(".samples button")?.click();
  }
}

main();
