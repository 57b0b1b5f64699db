// Page side of the onnxruntime-web peer: load bench/out/deit-tiny.onnx with one execution provider and time
// session.run on a real preprocessed image (bench/out/sample-input.f32, written by export_onnx.py).
// Everything is served from 127.0.0.1 by server.mjs; onnxruntime-web's .mjs/.wasm come from bench/node_modules.
//
// One build per page (run.mjs opens a fresh page per runner): 'webgpu' imports onnxruntime-web/webgpu
// (dist/ort.webgpu.min.mjs, the build with the WebGPU EP), 'wasm' imports onnxruntime-web/wasm
// (dist/ort.wasm.min.mjs, the CPU-only build).

const DIST = new URL('../node_modules/onnxruntime-web/dist/', import.meta.url).href;
const BUILDS = { webgpu: 'ort.webgpu.min.mjs', wasm: 'ort.wasm.min.mjs' };

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return {
    median_ms: median,
    min_ms: s[0],
    max_ms: s[s.length - 1],
    mean_ms: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

export async function adapterInfo() {
  if (!navigator.gpu) return { webgpu: false, reason: 'navigator.gpu is undefined' };
  const a = await navigator.gpu.requestAdapter();
  if (!a) return { webgpu: false, reason: 'requestAdapter() returned null' };
  const i = a.info || {};
  return {
    webgpu: true,
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    is_fallback_adapter: i.isFallbackAdapter ?? a.isFallbackAdapter ?? null,
    features: [...a.features].sort(),
    max_storage_buffer_binding_size: a.limits.maxStorageBufferBindingSize,
    max_compute_invocations_per_workgroup: a.limits.maxComputeInvocationsPerWorkgroup,
  };
}

/**
 * Time onnxruntime-web inference.
 * @param {object} o
 *   ep: 'webgpu' | 'wasm'; batch (1); warmup (3); runs (20); maxSeconds: stop timing after this long
 *   (at least 3 timed runs); threads: ort.env.wasm.numThreads (0 = navigator.hardwareConcurrency);
 *   model: URL of the .onnx; freeDims: pin the dynamic batch axis to `batch` (freeDimensionOverrides).
 */
export async function bench(o = {}) {
  const ep = o.ep || 'webgpu';
  const batch = o.batch || 1;
  const warmup = o.warmup ?? 3;
  const runs = o.runs ?? 20;
  const maxSeconds = o.maxSeconds ?? 120;
  const ort = await import(DIST + BUILDS[ep]);
  ort.env.wasm.wasmPaths = DIST;
  ort.env.wasm.numThreads = o.threads || navigator.hardwareConcurrency || 1;
  ort.env.logLevel = 'warning';

  const modelUrl = new URL(o.model || '../out/deit-tiny.onnx', import.meta.url).href;
  const [modelBytes, inputBytes, sample] = await Promise.all([
    fetch(modelUrl).then((r) => { if (!r.ok) throw new Error(`${modelUrl}: ${r.status}`); return r.arrayBuffer(); }),
    fetch(new URL('../out/sample-input.f32', import.meta.url)).then((r) => r.arrayBuffer()),
    fetch(new URL('../out/sample.json', import.meta.url)).then((r) => r.json()),
  ]);
  const opts = { executionProviders: [ep], graphOptimizationLevel: 'all' };
  if (o.freeDims !== false) opts.freeDimensionOverrides = { batch };
  let t0 = performance.now();
  const session = await ort.InferenceSession.create(new Uint8Array(modelBytes), opts);
  const createMs = performance.now() - t0;

  const one = new Float32Array(inputBytes);
  const data = new Float32Array(one.length * batch);
  for (let b = 0; b < batch; b++) data.set(one, b * one.length);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, [batch, 3, 224, 224]) };

  t0 = performance.now();
  let out = await session.run(feeds);
  const firstMs = performance.now() - t0;
  // correctness: image 0 against torch's logits
  const logits = out[session.outputNames[0]].data;
  const C = sample.logits.length;
  let maxDiff = 0;
  let top1 = 0;
  for (let c = 0; c < C; c++) {
    maxDiff = Math.max(maxDiff, Math.abs(logits[c] - sample.logits[c]));
    if (logits[c] > logits[top1]) top1 = c;
  }
  for (let i = 1; i < warmup; i++) await session.run(feeds);
  const samples = [];
  const tStart = performance.now();
  for (let i = 0; i < runs; i++) {
    t0 = performance.now();
    out = await session.run(feeds);
    samples.push(performance.now() - t0);
    if (samples.length >= 3 && performance.now() - tStart > maxSeconds * 1000) break;
  }
  await session.release();
  return {
    ep,
    build: BUILDS[ep],
    ort_version: ort.env.versions?.web ?? ort.env.versions?.common ?? null,
    batch,
    threads: ort.env.wasm.numThreads,
    cross_origin_isolated: self.crossOriginIsolated,
    graph_optimization: opts.graphOptimizationLevel,
    free_dimension_overrides: opts.freeDimensionOverrides ?? null,
    session_create_ms: createMs,
    first_run_ms: firstMs,
    warmup,
    runs: samples.length,
    ...stats(samples),
    images_per_s: (1000 * batch) / stats(samples).median_ms,
    samples_ms: samples,
    check: { image: sample.image, label: sample.label, top1, max_abs_diff_vs_torch: maxDiff },
  };
}
