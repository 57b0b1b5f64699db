// The page's side of the worker (worker.js): a small promise-based proxy. Every call posts one
// message and resolves with the worker's reply, so the page's main thread never parses a model,
// decodes an image, tokenises or waits on the GPU.
//
//   const zp = await createWorker();
//   const deit = await zp.loadImageModel("https://huggingface.co/timm/deit_tiny_patch16_224.fb_in1k/resolve/main/");
//   const r = await deit.classify(imageBytes, { flops: 0.65 });
//
// Model bytes given to load*Model are transferred to the worker (the page's buffer is detached:
// no copy of a model's megabytes); images and texts are copied, so a page may reuse them.

import { coded } from "./model-store.js";

const errorOf = (plain) => coded(plain.code, plain.message);

// The ArrayBuffer behind `bytes` (Uint8Array or ArrayBuffer), to transfer; a view of part of a
// buffer is copied first, so that nothing else the page holds is detached.
function ownBuffer(bytes) {
  if (bytes instanceof ArrayBuffer) return bytes;
  if (ArrayBuffer.isView(bytes)) {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    return whole ? bytes.buffer : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }
  throw coded("BAD_MODEL", "model must be a Uint8Array or an ArrayBuffer of a model.safetensors file");
}

/** A dedicated worker running the package; see index.d.ts. */
export class ZeropruneWorker {
  #worker;
  #pending = new Map();
  #next = 1;

  constructor(worker) {
    this.#worker = worker;
    worker.onmessage = ({ data }) => {
      const p = this.#pending.get(data.id);
      if (!p) return;
      if (data.progress) {
        p.onProgress?.(data.progress);
        return;
      }
      this.#pending.delete(data.id);
      if (data.error) p.reject(errorOf(data.error));
      else p.resolve(data.value);
    };
    // The worker script itself failed (not found, or a syntax error): every call fails with it.
    worker.onerror = (e) => {
      e.preventDefault?.();
      const error = coded("GPU", `the zeroprune worker failed: ${e.message || "it could not be started"}`);
      for (const p of this.#pending.values()) p.reject(error);
      this.#pending.clear();
    };
  }

  /** Post one request; resolves with its reply. */
  request(op, args = [], { transfer = [], onProgress } = {}) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onProgress });
      this.#worker.postMessage({ id, op, args }, transfer);
    });
  }

  limits() { return this.request("limits"); }
  policies(depth) { return this.request("policies", [depth]); }
  gpu() { return this.request("gpu"); }
  clearStoredModels() { return this.request("clearStoredModels"); }

  async loadImageModel(source, options = {}) {
    const r = await this.#load("loadImageModel", source, options);
    return new RemoteSession(this, r);
  }

  async loadTextModel(source, options = {}) {
    const r = await this.#load("loadTextModel", source, options);
    return new RemoteTextModel(this, r);
  }

  #load(op, source, { onProgress, precision } = {}) {
    if (typeof source === "string") {
      // A relative URL means the page's, not the worker script's.
      const url = new URL(source, globalThis.location?.href).href;
      return this.request(op, [url, { precision }], { onProgress });
    }
    if (!source || typeof source !== "object" || !source.model) {
      return Promise.reject(coded("BAD_MODEL", "a model source is a URL or an object {model, config, ...} with the model's bytes"));
    }
    let buffer;
    try {
      buffer = ownBuffer(source.model);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.request(op, [{ ...source, model: buffer }, { precision }], { transfer: [buffer], onProgress });
  }

  /** Stop the worker: every model in it is gone, pending calls never settle. */
  terminate() {
    this.#worker.terminate();
    for (const p of this.#pending.values()) p.reject(coded("DEVICE_LOST", "the zeroprune worker was terminated"));
    this.#pending.clear();
  }
}

class RemoteModel {
  #worker;
  #handle;

  constructor(worker, { handle, info, loaded, createMs }) {
    this.#worker = worker;
    this.#handle = handle;
    this.info = info;
    this.loaded = loaded;
    this.createMs = createMs;
  }

  call(method, args) {
    if (this.#handle === null) return Promise.reject(coded("BAD_OPTIONS", "this model was disposed"));
    return this.#worker.request("call", [this.#handle, method, args]);
  }

  /** Free the model's GPU memory in the worker; later calls reject. */
  async dispose() {
    if (this.#handle === null) return;
    const h = this.#handle;
    this.#handle = null;
    await this.#worker.request("free", [h]);
  }
}

/** An image model in the worker: the calls of `Session`, as promises. */
export class RemoteSession extends RemoteModel {
  classify(image, options) { return this.call("classify", [image, options]); }
  classifyBatch(images, options) { return this.call("classifyBatch", [images, options]); }
  embed(images, options) { return this.call("embed", [images, options]); }
  evaluate(images, labels, options) { return this.call("evaluate", [images, labels, options]); }
  bench(options) { return this.call("bench", [options]); }
  simulateDeviceLoss() { return this.call("simulateDeviceLoss", []); }
}

/** A text encoder in the worker: the calls of `TextModel`, as promises. */
export class RemoteTextModel extends RemoteModel {
  embed(texts, options) { return this.call("embed", [texts, options]); }
}

/**
 * Start the package in a dedicated module worker and wait until its wasm is loaded.
 * `options.worker`: a Worker already made from this package's worker.js (for bundlers that need
 * to see the `new Worker(new URL(...))` in the application's code).
 */
export async function createWorker(options = {}) {
  const worker = options.worker ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "zeroprune" });
  const zp = new ZeropruneWorker(worker);
  await zp.request("init");
  return zp;
}
