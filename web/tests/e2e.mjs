// End-to-end test of the demo page: serve web/ on 127.0.0.1, open it in headless Chromium (WebGPU on
// SwiftShader), let it load DeiT-Tiny from ../shared/models, classify real ImageNet images through
// the page's file picker, and check that the top-1 classes (dense and pruned) and the kept-token sets
// of every pruning step equal the native binary's on the same images. Saves a screenshot. Then the
// hostile part: a non-image, a huge PNG header, a non-model file and a lost GPU device each give the
// page a message, and the page recovers.
//
//   node web/tests/e2e.mjs [--images 3] [--bin $CARGO_TARGET_DIR/release/zeroprune] [--out web/tests/out]
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync } from "node:zlib";
import { launch } from "./chromium.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const shared = resolve(repo, "../shared");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const count = Number(args.images || 3);
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, "target");
const bin = args.bin ? resolve(args.bin) : join(targetDir, "release/zeroprune");
const out = resolve(repo, args.out || "web/tests/out");
const model = join(shared, "models/deit-tiny-patch16-224");
const imageDir = join(shared, "data/imagenet-val-1300/images");
// The page's defaults: the policy recommended at 65% of the dense FLOPs (zero-tprune-merge), dense alongside.
const PRUNE = ["--policy", "zero-tprune-merge", "--flops", "0.65"];
const TIMEOUT = 10 * 60 * 1000;

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

function native(extra, images) {
  const r = spawnSync(bin, ["classify", "--json", "--top", "5", "--model", model, ...extra, ...images], {
    env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`${bin} classify failed (${r.status}): ${r.stderr || r.error}`);
  return JSON.parse(r.stdout).images;
}

function serve() {
  return new Promise((ok, fail) => {
    const p = spawn("python3", [join(repo, "web/serve.py"), "--port", "0", "--models", join(shared, "models")], {
      env: { ...process.env, ZEROPRUNE_SERVE_QUIET: "1" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    p.on("exit", (code) => fail(new Error(`web/serve.py exited (${code})`)));
    p.stdout.on("data", (d) => {
      const m = String(d).match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) ok([p, m[0]]);
    });
  });
}

async function waitState(page, until, what) {
  await page.waitForFunction(
    (until) => until.includes(window.zeroprune?.state),
    until,
    { timeout: TIMEOUT, polling: 200 },
  );
  const state = await page.evaluate(() => window.zeroprune.state);
  if (!until.includes(state)) throw new Error(`${what}: page state ${state}`);
  return state;
}

// Where WebGPU is missing, or the adapter lacks a limit, the page says so instead of failing later.
async function unsupported(browser, url) {
  const cases = [
    ["no WebGPU", () => { delete Navigator.prototype.gpu; }, /WebGPU is not available/],
    ["a small adapter", () => {
      const request = GPU.prototype.requestAdapter;
      GPU.prototype.requestAdapter = async function (o) {
        const a = await request.call(this, o);
        const limits = {};
        for (const k in a.limits) limits[k] = a.limits[k];
        limits.maxComputeWorkgroupStorageSize = 8192;
        return new Proxy(a, { get: (t, k) => (k === "limits" ? limits : typeof t[k] === "function" ? t[k].bind(t) : t[k]) });
      };
    }, /lacks a limit.*maxComputeWorkgroupStorageSize/],
  ];
  for (const [what, script, message] of cases) {
    const page = await browser.newPage();
    await page.addInitScript(script);
    await page.goto(`${url}?autoload=0&sample=0`);
    await waitState(page, ["unsupported", "idle"], what);
    const text = await page.evaluate(() => document.getElementById("fatal").innerText);
    check(message.test(text), `${what}: the page explains "${text.slice(0, 90)}..."`);
    await page.close();
  }
}

// A PNG whose header says width x height, with one row of data: tiny, but a huge picture.
function pngHeader(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.alloc(1 + 3 * 16);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(row)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// Bad input and a lost device give the page a message, and the page recovers.
async function hostile(page) {
  // Run `action`, then wait until the page shows an error matching `pattern`.
  const expectError = async (what, action, pattern) => {
    await page.evaluate(() => { window.zeroprune.error = null; });
    await action();
    await page.waitForFunction(() => window.zeroprune.error, null, { timeout: TIMEOUT, polling: 100 });
    const err = await page.evaluate(() => window.zeroprune.error);
    check(pattern.test(err), `${what}: "${err}"`);
  };
  // A good image first (the last one was not an image).
  await page.evaluate(() => { window.zeroprune.last = null; });
  await page.click(".samples button");
  await page.waitForFunction(() => window.zeroprune.last && window.zeroprune.state === "done", null, { timeout: TIMEOUT, polling: 200 });
  // A lost device: the run fails with a message and a button that loads the model again.
  await expectError("a lost GPU device", async () => {
    await page.evaluate(() => window.zeroprune.session.simulateDeviceLoss());
    await page.click("#run");
  }, /GPU device lost/);
  const button = await page.$("#reload-model");
  check(button !== null, "after the loss the page offers to load the model again");
  if (button) {
    await page.evaluate(() => { window.zeroprune.last = null; });
    await button.click();
    await page.waitForFunction(() => window.zeroprune.last, null, { timeout: TIMEOUT, polling: 200 });
    const top = await page.evaluate(() => window.zeroprune.last.top[0].name);
    check(typeof top === "string", `on a new device the page classifies again (${top})`);
  }
  // A picture over the pixel limit is refused from its header, before decoding.
  await expectError("a 50000x50000 PNG",
    () => page.setInputFiles("#image-file", { name: "huge.png", mimeType: "image/png", buffer: pngHeader(50000, 50000) }),
    /huge\.png.*over the limit of 40000000 pixels/);
  // A file that is not a model: a message naming it; the model loaded before keeps working.
  await expectError("a model file that is not safetensors",
    () => page.setInputFiles("#model-files", { name: "model.safetensors", mimeType: "application/octet-stream", buffer: Buffer.from("not a model at all") }),
    /model\.safetensors.*not a valid safetensors file/);
  const still = await page.evaluate(async () => {
    const bytes = new Uint8Array(await (await fetch("samples/cat.jpg")).arrayBuffer());
    return (await window.zeroprune.session.classify(bytes, { policy: "none", top: 1 })).top[0].name;
  });
  check(typeof still === "string", `after the bad model file the loaded model still runs (${still})`);
}

// Every rejected promise is an Error with a stable `code` beside its message (the package's
// ErrorCode type): a program can tell a bad image from a bad option or a busy model. The page's
// calls go through the package's worker, so the codes are checked across the worker boundary.
async function errorCodes(page) {
  const got = await page.evaluate(async () => {
    const zp = window.zeroprune.zp;
    const s = window.zeroprune.session;
    const image = new Uint8Array(await (await fetch("samples/cat.jpg")).arrayBuffer());
    const fail = async (f) => {
      try { await f(); return { code: "none" }; } catch (e) { return { code: e.code, name: e.name, message: e.message }; }
    };
    const first = s.classify(image, { policy: "none" });
    const busy = await fail(() => s.classify(image));
    await first;
    return {
      image: await fail(() => s.classify(new Uint8Array([1, 2, 3]))),
      options: await fail(() => s.classify(image, { flops: 7 })),
      busy,
      model: await fail(() => zp.loadImageModel({ model: new Uint8Array(16), config: "{}" })),
      "model source": await fail(() => zp.loadImageModel(42)),
      "model URL": await fail(() => zp.loadImageModel("models/no-such-model/")),
      "text folder without tokenizer.json": await fail(() => zp.loadTextModel("models/deit-tiny-patch16-224/")),
      "kept kernel choice": await (async () => {
        const direct = await import("./pkg/index.js");
        await direct.init();
        return fail(async () => direct.useKernelChoice({ adapter: "x", version: "0.1.0" }));
      })(),
      "call on a disposed model": await (async () => {
        const m = await zp.loadTextModel("models/all-minilm-l6-v2/");
        await m.dispose();
        return fail(() => m.embed(["a"]));
      })(),
    };
  });
  for (const [what, want] of [["image", "BAD_IMAGE"], ["options", "BAD_OPTIONS"], ["busy", "BUSY"], ["model", "BAD_MODEL"],
    ["model source", "BAD_MODEL"], ["model URL", "DOWNLOAD"], ["text folder without tokenizer.json", "DOWNLOAD"],
    ["kept kernel choice", "BAD_OPTIONS"], ["call on a disposed model", "BAD_OPTIONS"]]) {
    const g = got[what];
    check(g.code === want && g.name === "ZeropruneError",
      `a bad ${what} rejects with code ${want}: ${g.code} (${g.name}: "${(g.message || "").slice(0, 70)}")`);
  }
}

// Models kept across visits (the package's model-store.js): the page's model load stored DeiT-Tiny, so
// loading the same URL again reads it from the origin private file system with no request; a new
// URL downloads once with progress events and is kept; a store with no room leaves the download
// usable and says so with code STORAGE.
async function modelStorage(page) {
  const requests = [];
  const onRequest = (r) => requests.push(new URL(r.url()).pathname);
  page.on("request", onRequest);
  const got = await page.evaluate(async () => {
    const { fetchModelFile, clearStoredModels } = await import("./pkg/index.js");
    const model = "models/deit-tiny-patch16-224/model.safetensors";
    const again = await fetchModelFile(model);
    const file = "samples/rocket.jpg";
    const events = [];
    const first = await fetchModelFile(file, { onProgress: (p) => events.push(p) });
    const second = await fetchModelFile(file);
    const same = first.bytes.length === second.bytes.length && first.bytes.every((v, i) => v === second.bytes[i]);
    // No room: the quota the page sees is 10 bytes.
    const estimate = navigator.storage.estimate;
    navigator.storage.estimate = async () => ({ quota: 10, usage: 0 });
    const full = await fetchModelFile("samples/coffee.jpg");
    navigator.storage.estimate = estimate;
    let tooLarge = null;
    try { await fetchModelFile("samples/astronaut.jpg", { maxBytes: 100 }); } catch (e) { tooLarge = e.code; }
    const status = document.getElementById("model-status").textContent;
    await clearStoredModels();
    return {
      again: { fromStorage: again.fromStorage, bytes: again.bytes.length },
      first: { fromStorage: first.fromStorage, stored: first.stored, events: events.length, last: events[events.length - 1] },
      second: { fromStorage: second.fromStorage, same },
      full: { stored: full.stored, bytes: full.bytes.length, code: full.storeError && full.storeError.code, message: full.storeError && full.storeError.message },
      tooLarge, status,
    };
  });
  page.off("request", onRequest);
  const count = (path) => requests.filter((p) => p.endsWith(path)).length;
  check(got.again.fromStorage && got.again.bytes > 5e6 && count("model.safetensors") === 0,
    `a second load of the page's model URL reads ${(got.again.bytes / 1e6).toFixed(1)} MB from storage with no request ` +
    `(${count("model.safetensors")} requests; the page says "${got.status.slice(got.status.indexOf("Weights"))}")`);
  check(!got.first.fromStorage && got.first.stored && got.first.events > 0 && got.first.last.loaded === got.first.last.total &&
    got.second.fromStorage && got.second.same && count("rocket.jpg") === 1,
    `a new URL downloads once with ${got.first.events} progress events and is kept; the second load makes no request ` +
    `(${count("rocket.jpg")} request in all)`);
  check(!got.full.stored && got.full.bytes > 0 && got.full.code === "STORAGE",
    `storage with no room: the download is still usable, not kept, code ${got.full.code} ("${got.full.message}")`);
  check(got.tooLarge === "TOO_LARGE", `a file over maxBytes is refused before it is kept: ${got.tooLarge}`);
}

// The wasm API for text models: all-MiniLM-L6-v2 loaded from the served folder embeds real sentences
// as `zeroprune embed --json` does (same tokens, cosine >= 0.9999 on another GPU).
async function textModel(page) {
  const texts = JSON.parse(readFileSync(join(repo, "tests/fixtures/text/sentences.json"), "utf8")).minilm.slice(0, 3);
  const r = spawnSync(bin, ["embed", "--json", "--model", join(shared, "models/all-minilm-l6-v2"), ...texts], {
    env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`${bin} embed failed (${r.status}): ${r.stderr || r.error}`);
  const native = JSON.parse(r.stdout);
  // Every model of the page's worker shares one GPU device: loading text models opens none.
  const devicesBefore = await page.evaluate(async () => (await window.zeroprune.zp.gpu()).devicesOpened);
  // The direct API (no worker) on the page's main thread: init, then TextModel.create.
  const web = await page.evaluate(async (texts) => {
    const { init, TextModel } = await import("./pkg/index.js");
    await init();
    const dir = "models/all-minilm-l6-v2/";
    const text = async (f) => { const resp = await fetch(dir + f); return resp.ok ? resp.text() : undefined; };
    const bytes = new Uint8Array(await (await fetch(dir + "model.safetensors")).arrayBuffer());
    const m = await TextModel.create(bytes, await text("config.json"), await text("tokenizer.json"), {
      modules: await text("modules.json"),
      pooling: await text("1_Pooling/config.json"),
      sentenceBert: await text("sentence_bert_config.json"),
    });
    const out = await m.embed(texts);
    let empty = null;
    let emptyCode = null;
    try { await m.embed(["fine", "   "]); } catch (e) { empty = e.message; emptyCode = e.code; }
    return { ...out, info: m.info, empty, emptyCode };
  }, texts);
  check(JSON.stringify(web.tokens) === JSON.stringify(native.tokens),
    `text model in the browser: tokens ${web.tokens.join(",")} equal native ${native.tokens.join(",")}`);
  const cos = web.embeddings.map((e, i) => {
    const n = native.embeddings[i];
    const dot = e.reduce((s, x, j) => s + x * n[j], 0);
    const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    return dot / (norm(e) * norm(n));
  });
  check(cos.every((c) => c >= 0.9999), `text embeddings equal native: cosine ${cos.map((c) => c.toFixed(7)).join(", ")} ` +
    `(${web.info.layers} layers, ${web.latencyMs.toFixed(0)} ms for ${texts.length} texts)`);
  check(/text 2 is empty/.test(web.empty || "") && web.emptyCode === "BAD_TEXT",
    `an empty text is refused: "${web.empty}" (code ${web.emptyCode})`);

  // Pruned, through the same request as the CLI's flags: the same tokens kept at every step, the
  // same embeddings. The sentences are the reference's MiniLM cases, whose decisions have margins.
  const pruneTexts = JSON.parse(readFileSync(join(repo, "tests/fixtures/text/prune-texts.json"), "utf8")).minilm;
  for (const [policy, keep] of [["zero-tprune", "0.7@1,2,3"], ["tome", "0.8@0,1,2,3,4,5"]]) {
    const n = spawnSync(bin, ["embed", "--json", "--model", join(shared, "models/all-minilm-l6-v2"),
      "--policy", policy, "--keep", keep, ...pruneTexts], {
      env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    if (n.status !== 0) throw new Error(`${bin} embed --policy ${policy} failed: ${n.stderr}`);
    const nat = JSON.parse(n.stdout);
    const w = await page.evaluate(async ([texts, policy, keep]) => {
      const { TextModel } = await import("./pkg/index.js");
      const dir = "models/all-minilm-l6-v2/";
      const text = async (f) => { const resp = await fetch(dir + f); return resp.ok ? resp.text() : undefined; };
      const bytes = new Uint8Array(await (await fetch(dir + "model.safetensors")).arrayBuffer());
      const m = await TextModel.create(bytes, await text("config.json"), await text("tokenizer.json"), {
        modules: await text("modules.json"), pooling: await text("1_Pooling/config.json"),
        sentenceBert: await text("sentence_bert_config.json"),
      });
      return await m.embed(texts, { policy, keep });
    }, [pruneTexts, policy, keep]);
    check(JSON.stringify(w.kept) === JSON.stringify(nat.kept),
      `text pruning in the browser (${policy} ${keep}): kept tokens equal native at every step ` +
      `(${w.kept.map((k) => k.map((s) => s.length).join("/")).join(", ")})`);
    const c = w.embeddings.map((e, i) => cosineOf(e, nat.embeddings[i]));
    check(c.every((x) => x >= 0.9999), `pruned text embeddings equal native: cosine ${c.map((x) => x.toFixed(7)).join(", ")}`);
  }

  // The page's text panel: two sentences, their cosine as `zeroprune similarity --json` gives it.
  const [a, b] = texts;
  const sim = spawnSync(bin, ["similarity", "--json", "--model", join(shared, "models/all-minilm-l6-v2"), a, b], {
    env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
    encoding: "utf8",
  });
  if (sim.status !== 0) throw new Error(`${bin} similarity failed: ${sim.stderr}`);
  const simJson = JSON.parse(sim.stdout);
  const nativeCos = simJson.cosine;
  await page.fill("#text-a", a);
  await page.fill("#text-b", b);
  await page.click("#text-run");
  await page.waitForFunction(() => ["done", "error"].includes(window.zeroprune.text.state), null, { timeout: TIMEOUT, polling: 200 });
  const panel = await page.evaluate(() => ({ ...window.zeroprune.text, model: null, status: document.getElementById("text-status").innerText }));
  check(panel.state === "done" && Math.abs(panel.result.cosine - nativeCos) < 1e-4,
    `text panel: "${panel.status}" (native cosine ${nativeCos.toFixed(4)})${panel.error ? " " + panel.error : ""}`);
  // Its pruned side (the page's default, tome at 65% of the dense FLOPs), as `similarity --policy` gives it.
  const simP = spawnSync(bin, ["similarity", "--json", "--model", join(shared, "models/all-minilm-l6-v2"),
    "--policy", "tome", "--flops", "0.65", a, b], {
    env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
    encoding: "utf8",
  });
  if (simP.status !== 0) throw new Error(`${bin} similarity --policy failed: ${simP.stderr}`);
  const natP = JSON.parse(simP.stdout).pruned;
  const shaded = await page.evaluate(() => document.querySelectorAll("#text-kept .pruned").length);
  const oneDevice = await page.evaluate(async () => ({
    devices: (await window.zeroprune.zp.gpu()).devicesOpened,
    image: window.zeroprune.session.info.adapter,
    text: window.zeroprune.text.model.info.adapter,
  }));
  check(oneDevice.devices === devicesBefore && oneDevice.image === oneDevice.text,
    `one GPU device in the worker for the image model and the text model (devices opened: ${devicesBefore} before the text model, ${oneDevice.devices} after)`);
  await page.locator("#text-panel").screenshot({ path: join(out, "text.png") });
  check(panel.pruned && Math.abs(panel.pruned.cosine - natP.cosine) < 1e-4 &&
    JSON.stringify(panel.pruned.kept) === JSON.stringify(natP.kept) && shaded > 0,
    `text panel pruned: "${document_text(panel)}" (native ${natP.cosine.toFixed(4)}), kept words equal native, ${shaded} shaded`);
}

// The package's worker: the page's main thread stays responsive (a 10 ms timer keeps firing on
// time) while a worker starts, downloads DeiT-Tiny, parses it, measures the kernels, uploads the
// weights and classifies an image; a second worker loads the same URL from storage, with no
// request. For contrast, the same load and run through the direct API on the main thread. Reports
// the time to the first result (cold and from storage) and the main thread's longest blocked
// interval.
async function workerResponsiveness(browser, url) {
  const page = await browser.newPage();
  const requests = [];
  page.on("request", (r) => requests.push(new URL(r.url()).pathname));
  page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
  await page.goto(`${url}?autoload=0&sample=0`);
  await waitState(page, ["idle"], "the page without a model");
  const got = await page.evaluate(async () => {
    const { createWorker, init, Session, fetchImageModel } = await import("./pkg/index.js");
    const model = "models/deit-tiny-patch16-224/";
    const image = new Uint8Array(await (await fetch("samples/cat.jpg")).arrayBuffer());
    // `work`'s wall time, and the longest gap between ticks of a 10 ms timer beyond its 10 ms.
    const blocked = async (work) => {
      let last = performance.now();
      let longest = 0;
      const tick = () => {
        const t = performance.now();
        longest = Math.max(longest, t - last - 10);
        last = t;
      };
      const timer = setInterval(tick, 10);
      const t = performance.now();
      const value = await work();
      const ms = performance.now() - t;
      clearInterval(timer);
      tick();
      return { ...value, ms, longest };
    };
    const firstResult = async () => {
      const zp = await createWorker();
      const m = await zp.loadImageModel(model);
      const r = await m.classify(image, { flops: 0.65 });
      const { kernelChoiceStored } = await zp.gpu();
      zp.terminate();
      return { top: r.top[0].name, fromStorage: m.loaded.fromStorage, kernelChoiceStored, createMs: m.createMs };
    };
    await window.zeroprune.zp.clearStoredModels();
    const cold = await blocked(firstResult);
    const stored = await blocked(firstResult);
    await init();
    const direct = await blocked(async () => {
      const f = await fetchImageModel(model);
      const s = await Session.create(f.model, f.config);
      const r = await s.classify(image, { flops: 0.65 });
      s.free();
      return { top: r.top[0].name, fromStorage: f.loaded.fromStorage };
    });
    return { cold, stored, direct };
  });
  await page.close();
  const weights = requests.filter((p) => p.endsWith("model.safetensors")).length;
  const { cold, stored, direct } = got;
  const ms = (x) => `${x.toFixed(0)} ms`;
  check(!cold.fromStorage && stored.fromStorage && direct.fromStorage && weights === 1 && cold.top === stored.top,
    `a second worker loads the same model URL from storage: ${weights} request for the weights in all (${stored.top})`);
  check(!cold.kernelChoiceStored && stored.kernelChoiceStored,
    `the kernel choice measured by the first worker is kept: the second adopts it (model ready in ${ms(stored.createMs)}, ` +
    `against ${ms(cold.createMs)} measuring)`);
  check(cold.longest < 200 && stored.longest < 200,
    `the main thread stays responsive while the worker loads and runs: longest blocked interval ` +
    `${ms(cold.longest)} (cold) and ${ms(stored.longest)} (from storage); the direct API on the main thread blocks it for ${ms(direct.longest)}`);
  console.log(`  time to the first result on samples/cat.jpg (worker start, weights, kernel choice, upload, classify): ` +
    `${ms(cold.ms)} cold (the weights downloaded from localhost, the kernels measured), ${ms(stored.ms)} with both from storage`);
  return { timeToFirstResultMs: { cold: cold.ms, fromStorage: stored.ms }, createMs: { cold: cold.createMs, fromStorage: stored.createMs }, mainThreadLongestBlockedMs: { workerCold: cold.longest, workerFromStorage: stored.longest, directApi: direct.longest } };
}

// Image embeddings in the browser (`session.embed`, through the worker): the cosine of two
// samples' embeddings equals `zeroprune similarity --json`'s, dense and pruned; the page's "which
// sample is closest" ranks the four samples by it.
async function imageEmbeddings(page) {
  const samples = ["cat.jpg", "coffee.jpg"].map((f) => join(repo, "web/samples", f));
  const similarity = (extra) => {
    const r = spawnSync(bin, ["similarity", "--json", "--model", model, ...extra, ...samples], {
      env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`${bin} similarity failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const dense = similarity([]);
  const pruned = similarity(["--policy", "tome", "--flops", "0.65"]);
  const web = await page.evaluate(async () => {
    const s = window.zeroprune.session;
    const images = await Promise.all(["cat", "coffee"].map(async (n) =>
      new Uint8Array(await (await fetch(`samples/${n}.jpg`)).arrayBuffer())));
    const cos = (a, b) => a.reduce((t, x, i) => t + x * b[i], 0) /
      Math.sqrt(a.reduce((t, x) => t + x * x, 0) * b.reduce((t, x) => t + x * x, 0));
    const d = await s.embed(images);
    const p = await s.embed(images, { policy: "tome", flops: 0.65 });
    return { dense: cos(...d.embeddings), pruned: cos(...p.embeddings), dim: d.dim, toDense: p.cosineToDense };
  });
  check(Math.abs(web.dense - dense.cosine) < 1e-4 && Math.abs(web.pruned - pruned.pruned.cosine) < 1e-4 &&
    web.toDense.every((c) => c > 0.9 && c <= 1 + 1e-6),
    `session.embed: cat and coffee at cosine ${web.dense.toFixed(4)} dense, ${web.pruned.toFixed(4)} with tome at 65% ` +
    `(native ${dense.cosine.toFixed(4)}, ${pruned.pruned.cosine.toFixed(4)}); ${web.dim} dims, ` +
    `cosine to dense ${web.toDense.map((c) => c.toFixed(4)).join(", ")}`);
  await page.evaluate(() => { window.zeroprune.closest = null; window.zeroprune.last = null; });
  await page.click(".samples button");
  await page.waitForFunction(() => window.zeroprune.last && window.zeroprune.state === "done", null, { timeout: TIMEOUT, polling: 200 });
  await page.click("#closest-run");
  await page.waitForFunction(() => window.zeroprune.closest || window.zeroprune.state === "error", null, { timeout: TIMEOUT, polling: 200 });
  const closest = await page.evaluate(() => window.zeroprune.closest);
  check(closest && closest.ranked.length === 4 && closest.ranked[0].file === closest.image && closest.ranked[0].cosine > 0.9999,
    `"which sample is closest": ${closest ? closest.ranked.map((x) => `${x.label} ${x.cosine.toFixed(3)}`).join(", ") : "no answer"}`);
}

function document_text(panel) {
  return panel.pruned ? `cosine ${panel.pruned.cosine.toFixed(4)} at ${(100 * panel.pruned.flopsShare).toFixed(0)}% FLOPs` : "none";
}

function cosineOf(e, n) {
  const dot = e.reduce((s, x, j) => s + x * n[j], 0);
  const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return dot / (norm(e) * norm(n));
}

async function main() {
  const images = readdirSync(imageDir).sort().slice(0, count).map((f) => join(imageDir, f));
  console.log(`native: ${bin} on ${images.length} images`);
  const dense = native([], images);
  const pruned = native(PRUNE, images);

  const [server, url] = await serve();
  const browser = await launch();
  try {
    await unsupported(browser, url);
    const page = await browser.newPage();
    page.on("console", (m) => m.type() === "error" && console.log(`  [page] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
    // No sample image: the test picks its own through the file input.
    await page.goto(`${url}?sample=0`);
    const loaded = await waitState(page, ["ready", "error", "unsupported"], "loading the model");
    check(loaded === "ready", `page loaded DeiT-Tiny from ${url}models/ (${loaded})`);
    if (loaded !== "ready") throw new Error(await page.evaluate(() => window.zeroprune.error || document.body.innerText));
    const info = await page.evaluate(() => window.zeroprune.info);
    console.log(`  adapter: ${info.adapter}`);

    for (const [i, file] of images.entries()) {
      const name = file.split("/").pop();
      await page.setInputFiles("#image-file", file);
      await page.waitForFunction(
        (name) => ["done", "error"].includes(window.zeroprune.state) && (window.zeroprune.last?.image === name || window.zeroprune.state === "error"),
        name,
        { timeout: TIMEOUT, polling: 200 },
      );
      const r = await page.evaluate(() => ({ state: window.zeroprune.state, error: window.zeroprune.error, last: window.zeroprune.last }));
      if (r.state === "error") {
        check(false, `${name}: ${r.error}`);
        continue;
      }
      const web = r.last;
      const want = pruned[i];
      check(web.dense.top[0].class === dense[i].top[0].class,
        `${name} dense top-1: web ${web.dense.top[0].class} (${web.dense.top[0].name}), native ${dense[i].top[0].class}`);
      check(web.top[0].class === want.top[0].class,
        `${name} pruned top-1: web ${web.top[0].class}, native ${want.top[0].class}`);
      const same = web.steps.length === want.kept.length &&
        web.steps.every((s, j) => JSON.stringify(s.kept) === JSON.stringify(want.kept[j]));
      check(same, `${name} kept tokens at blocks ${web.steps.map((s) => `${s.block}:${s.kept.length}`).join(" ")} ` +
        `equal native (${want.kept.map((k) => k.length).join(" ")})`);
      console.log(`  latency: dense ${web.dense.latencyMs.toFixed(0)} ms, pruned ${web.latencyMs.toFixed(0)} ms (${web.speedup.toFixed(2)}x)`);
    }

    mkdirSync(out, { recursive: true });
    const shot = join(out, "demo.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);

    // The API takes decoded pixels too: the browser's own decoding of a sample through a canvas
    // (ImageData) gives the same top-1 class as the encoded bytes decoded in Rust.
    const viaPixels = await page.evaluate(async () => {
      const bytes = new Uint8Array(await (await fetch("samples/cat.jpg")).arrayBuffer());
      const bitmap = await createImageBitmap(new Blob([bytes]));
      const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
      const g = canvas.getContext("2d");
      g.drawImage(bitmap, 0, 0);
      const pixels = g.getImageData(0, 0, bitmap.width, bitmap.height);
      const s = window.zeroprune.session;
      const a = await s.classify(bytes, { policy: "none", top: 1 });
      const b = await s.classify(pixels, { policy: "none", top: 1 });
      return [a.top[0], b.top[0]];
    });
    check(viaPixels[0].class === viaPixels[1].class,
      `ImageData input: ${viaPixels[1].name} (${viaPixels[1].probability.toFixed(3)}), bytes: ${viaPixels[0].name} (${viaPixels[0].probability.toFixed(3)})`);

    // The evaluation driver in the browser: the four samples dense and pruned, paired figures
    // by the names `zeroprune eval --json` uses; their labels are the dense model's own classes.
    const evaluated = await page.evaluate(async () => {
      const s = window.zeroprune.session;
      const names = ["astronaut", "cat", "coffee", "rocket"];
      const images = await Promise.all(names.map(async (n) =>
        new Uint8Array(await (await fetch(`samples/${n}.jpg`)).arrayBuffer())));
      const dense = [];
      for (const img of images) dense.push((await s.classify(img, { policy: "none", top: 1 })).top[0].class);
      return await s.evaluate(images, dense, { policy: "tome", flops: 0.65, batch: 2 });
    });
    check(evaluated.images === 4 && evaluated.dense_top1 === 1 && evaluated.agreement === evaluated.top1 &&
      evaluated.flops_ratio <= 0.65 && evaluated.speedup > 0,
      `session.evaluate: ${evaluated.images} images, agreement ${(100 * evaluated.agreement).toFixed(0)}%, ` +
      `${(100 * evaluated.flops_ratio).toFixed(1)}% of the dense FLOPs, ${evaluated.speedup.toFixed(2)}x`);

    // A list of images in one call, batched on the GPU: the same classes and kept tokens as one
    // image at a time.
    const batched = await page.evaluate(async () => {
      const s = window.zeroprune.session;
      const images = await Promise.all(["astronaut", "cat", "coffee", "rocket"].map(async (n) =>
        new Uint8Array(await (await fetch(`samples/${n}.jpg`)).arrayBuffer())));
      const options = { policy: "tome", flops: 0.65 };
      const one = [];
      for (const img of images) one.push(await s.classify(img, { ...options, top: 1 }));
      const b = await s.classifyBatch(images, { ...options, top: 1, batch: 3 });
      return {
        batch: b.batch, n: b.results.length, imagesPerS: b.imagesPerS,
        same: b.results.every((r, i) => r.top[0].class === one[i].top[0].class &&
          JSON.stringify(r.steps) === JSON.stringify(one[i].steps)),
        defaultBatch: (await s.classifyBatch(images.slice(0, 2))).batch,
      };
    });
    check(batched.n === 4 && batched.batch === 3 && batched.same && batched.defaultBatch === 8,
      `session.classifyBatch: 4 images in passes of 3, classes and kept tokens equal one at a time ` +
      `(${batched.imagesPerS.toFixed(2)} images/s; default batch ${batched.defaultBatch})`);

    // A file that is not an image: a clear message, and the page keeps working.
    await page.setInputFiles("#image-file", { name: "notes.jpg", mimeType: "image/jpeg", buffer: Buffer.from("not an image") });
    await waitState(page, ["error"], "a bad image");
    const err = await page.evaluate(() => window.zeroprune.error);
    check(/not a JPEG, PNG, WebP, BMP or GIF/.test(err), `a non-image file is refused with a message: "${err}"`);
    await errorCodes(page);
    await modelStorage(page);
    await hostile(page);
    await textModel(page);
    await imageEmbeddings(page);
    const worker = await workerResponsiveness(browser, url);
    writeFileSync(join(out, "result.json"), JSON.stringify({ failures, images: images.length, worker }, null, 2));
  } finally {
    await browser.close();
    server.kill();
  }
  console.log(failures ? `\n${failures} check(s) failed` : "\nall checks passed");
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(`e2e failed: ${e.stack || e}`);
  process.exit(1);
});
