// The dedicated worker behind `createWorker()` (client.js): the wasm package, the model files'
// download and storage, decoding, tokenising and the GPU work all run here, so the page's main
// thread only posts messages. The kernel choice measured on the adapter is kept beside the models
// for the next visit. One message in, one reply out, with progress messages between:
//
//   in:  {id, op, args}                 op: init | limits | policies | gpu | loadImageModel |
//                                       loadTextModel | call | free | clearStoredModels
//   out: {id, progress} | {id, value} | {id, error: {name, code, message}}
//
// Models live here under integer handles; the page holds proxies (client.js).

import init, { Session, TextModel, gpu, kernelChoice, limits, policies, useKernelChoice } from "./zeroprune.js";
import { clearStoredModels, storeRecord, storedRecord } from "./model-store.js";
import { fetchImageModel, fetchTextModel } from "./models.js";

const models = new Map();
let nextHandle = 1;
let ready = null;

// The wasm module, and the kernel choice an earlier visit measured on this adapter (measuring it
// again takes seconds on a GPU, tens of seconds on a software adapter).
async function start() {
  await init();
  const saved = await storedRecord("kernel-choice");
  if (saved && saved.browserAdapter === (await browserAdapter())) {
    try {
      delete saved.browserAdapter;
      useKernelChoice(saved);
    } catch {
      // Not a choice this version reads: it is measured again and replaced.
    }
  }
}

// After a model is created: keep the choice measured for it, for the next visit.
async function keepKernelChoice() {
  const choice = kernelChoice();
  if (choice && !gpu().kernelChoiceStored) await storeRecord("kernel-choice", { ...choice, browserAdapter: await browserAdapter() });
}

// The browser's own description of its default adapter: wgpu's name for it in the browser can be
// as plain as "WebGPU adapter (BrowserWebGpu, DiscreteGpu)", which two GPUs of one machine share.
async function browserAdapter() {
  const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
  const i = a?.info ?? {};
  return [i.vendor, i.architecture, i.device, i.description].join("|");
}

// A model's source: a URL string, or `{model, config, tokenizer, files}` with the bytes.
async function imageFiles(source, progress) {
  if (typeof source === "string") return fetchImageModel(source, { onProgress: progress, maxBytes: limits().maxModelFileBytes });
  return { model: new Uint8Array(source.model), config: source.config, loaded: null };
}

async function textFiles(source, progress) {
  if (typeof source === "string") return fetchTextModel(source, { onProgress: progress, maxBytes: limits().maxModelFileBytes });
  return { ...source, model: new Uint8Array(source.model), loaded: null };
}

// The calls a page may make on a model, by kind: nothing else crosses the boundary.
const METHODS = {
  image: new Set(["classify", "classifyBatch", "embed", "evaluate", "bench", "simulateDeviceLoss"]),
  text: new Set(["embed"]),
};

const ops = {
  init: () => null,
  limits: () => limits(),
  policies: ([depth]) => policies(depth),
  gpu: () => gpu(),
  clearStoredModels: () => clearStoredModels(),
  async loadImageModel([source, options], progress) {
    const f = await imageFiles(source, progress);
    const t = performance.now();
    const model = await Session.create(f.model, f.config ?? undefined, options?.precision);
    await keepKernelChoice();
    return register("image", model, f.loaded, performance.now() - t);
  },
  async loadTextModel([source, options], progress) {
    const f = await textFiles(source, progress);
    const t = performance.now();
    const model = await TextModel.create(f.model, f.config, f.tokenizer, f.files, options?.precision);
    await keepKernelChoice();
    return register("text", model, f.loaded, performance.now() - t);
  },
  async call([handle, method, args]) {
    const m = models.get(handle);
    if (!m) throw Object.assign(new Error("this model was disposed"), { name: "ZeropruneError", code: "BAD_OPTIONS" });
    if (!METHODS[m.kind].has(method)) {
      throw Object.assign(new Error(`a ${m.kind} model has no call ${method}`), { name: "ZeropruneError", code: "BAD_OPTIONS" });
    }
    return m.model[method](...args);
  },
  free([handle]) {
    models.get(handle)?.model.free();
    models.delete(handle);
    return null;
  },
};

function register(kind, model, loaded, createMs) {
  const handle = nextHandle++;
  models.set(handle, { kind, model });
  return { handle, info: model.info, loaded, createMs };
}

// Errors cross as plain data; the page makes them Errors again. An error without a code is not
// one of the package's (a bug, or the browser's): it crosses as GPU, its name kept in the message.
function plainError(e) {
  if (e && e.code) return { name: e.name, code: e.code, message: e.message };
  const name = e && e.name ? e.name : "Error";
  return { name: "ZeropruneError", code: "GPU", message: `${name}: ${e && e.message ? e.message : String(e)}` };
}

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    ready ??= start();
    await ready;
    const progress = (p) => self.postMessage({ id, progress: p });
    const value = await ops[op](args ?? [], progress);
    self.postMessage({ id, value });
  } catch (e) {
    self.postMessage({ id, error: plainError(e) });
  }
};
