// Drive headless Chromium (Debian's /usr/bin/chromium through playwright-core) and time the browser peers in
// one browser session: onnxruntime-web with the WebGPU EP (and the WASM EP) on bench/out/deit-tiny.onnx.
//
//   node bench/ort-web/run.mjs [--runs 20] [--warmup 3] [--batch 1] [--runners ort-webgpu,ort-wasm]
//                              [--max-seconds 120] [--out bench/out/ort-web.json] [--chromium /usr/bin/chromium]
//                              [--flag --some-chromium-flag ...] [--mount /PREFIX/=DIR ...] [--verbose]
//
// Adding a runner (e.g. our own wasm build): add an entry to RUNNERS below, `async (ctx, o) => result`, where
// `ctx.newPage('repo/web/index.html')` opens a page of the local server (bench/ is served at `/`, the whole
// repository at `/repo/`, ../shared at `/shared/`, more with --mount /PREFIX/=DIR; all cross-origin isolated), `o` holds the common options (runs, warmup, batch,
// maxSeconds) and the result is an object with at least `median_ms` (also min_ms, max_ms, runs...).
// Every runner gets a fresh page in the same browser, one after the other; the adapter info is read once.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';
import { QUIET_FLAGS, WEBGPU_FLAGS } from '../../web/tests/chromium-flags.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BENCH = path.resolve(HERE, '..');
const REPO = path.resolve(BENCH, '..');
const SHARED = process.env.ZP_SHARED ? path.resolve(process.env.ZP_SHARED) : path.resolve(REPO, '..', 'shared');

// The flags the e2e test uses too (WebGPU on SwiftShader, and quiet networking).
export { QUIET_FLAGS, WEBGPU_FLAGS };

/** Runners: name -> async (ctx, o) => result object with median_ms. */
export const RUNNERS = {
  'ort-webgpu': (ctx, o) => ortRunner(ctx, o, 'webgpu'),
  'ort-wasm': (ctx, o) => ortRunner(ctx, o, 'wasm'),
  // Our wasm build (web/pkg, from scripts/build-web.sh) on the same adapter: dense and Zero-TPrune at
  // 65% of the FLOPs, interleaved run by run, through the library's own `session.bench`.
  'zeroprune-webgpu': (ctx, o) => zeropruneRunner(ctx, o),
};

async function zeropruneRunner(ctx, o) {
  if (!fs.existsSync(path.join(REPO, 'web/pkg/zeroprune_bg.wasm'))) {
    throw new Error('web/pkg is missing: build it with scripts/build-web.sh');
  }
  const page = await ctx.newPage('repo/web/index.html?autoload=0&sample=0');
  await page.waitForFunction(() => ['idle', 'unsupported'].includes(window.zeroprune?.state), null, { timeout: 60000 });
  const results = [];
  for (const batch of o.batches) {
    const r = await page.evaluate(async (a) => {
      // The direct API on the page's thread (no worker), as onnxruntime-web runs here.
      const { init, Session } = await import('/repo/web/pkg/index.js');
      await init();
      const base = '/shared/models/deit-tiny-patch16-224/';
      const t0 = performance.now();
      const bytes = new Uint8Array(await (await fetch(base + 'model.safetensors')).arrayBuffer());
      const config = await (await fetch(base + 'config.json')).text();
      const session = await Session.create(bytes, config);
      const create = performance.now() - t0;
      const prune = { policy: 'zero-tprune', flops: 0.65, batch: a.batch };
      const t1 = performance.now();
      await session.bench({ ...prune, runs: 1 }); // compiles and warms both programs
      const first = performance.now() - t1;
      const dense = [], pruned = [];
      const start = performance.now();
      while (dense.length < a.runs && (dense.length < 3 || performance.now() - start < a.maxSeconds * 1000)) {
        const r = await session.bench({ ...prune, runs: 1 });
        dense.push(r.dense.medianMs);
        pruned.push(r.pruned.medianMs);
      }
      const stats = (v) => {
        const s = [...v].sort((x, y) => x - y);
        return { median_ms: s[Math.floor(s.length / 2)], min_ms: s[0], max_ms: s[s.length - 1], runs: s.length };
      };
      const d = stats(dense), p = stats(pruned);
      const { adapter, gemmKernel, fusedAttention } = session.info;
      session.free();
      return { ...d, batch: a.batch, session_create_ms: create, first_run_ms: first, adapter, gemm_kernel: gemmKernel, fused_attention: fusedAttention,
        dense: d, pruned: { ...p, policy: 'zero-tprune', flops: 0.65 }, speedup: d.median_ms / p.median_ms };
    }, { batch, runs: o.runs, maxSeconds: o.maxSeconds });
    ctx.log(`zeroprune batch ${batch}: dense median ${r.dense.median_ms.toFixed(1)} ms, zero-tprune 0.65 `
      + `${r.pruned.median_ms.toFixed(1)} ms (${r.speedup.toFixed(2)}x), ${r.runs} interleaved runs; `
      + `session ${r.session_create_ms.toFixed(0)} ms; GEMM ${r.gemm_kernel}, fused attention ${r.fused_attention}`);
    results.push(r);
  }
  await page.close();
  return { ...results[0], by_batch: results };
}

async function ortRunner(ctx, o, ep) {
  const page = await ctx.newPage('ort-web/index.html');
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30000 });
  const results = [];
  for (const batch of o.batches) {
    const r = await page.evaluate((args) => window.ortBench.bench(args), {
      ep, batch, runs: o.runs, warmup: o.warmup, maxSeconds: o.maxSeconds,
    });
    ctx.log(`${ep} batch ${batch}: median ${r.median_ms.toFixed(1)} ms (min ${r.min_ms.toFixed(1)}, max ${r.max_ms.toFixed(1)}, `
      + `${r.runs} runs; session ${r.session_create_ms.toFixed(0)} ms, first run ${r.first_run_ms.toFixed(0)} ms; `
      + `top-1 ${r.check.top1} (label ${r.check.label}), max |diff| vs torch ${r.check.max_abs_diff_vs_torch.toExponential(2)})`);
    results.push(r);
  }
  await page.close();
  // the headline is the first batch size; every batch size is listed
  return { ...results[0], by_batch: results };
}

function parseArgs(argv) {
  const o = {
    runs: 20, warmup: 3, batches: [1], runners: Object.keys(RUNNERS), maxSeconds: 120,
    out: path.join(BENCH, 'out', 'ort-web.json'), chromium: process.env.CHROMIUM || '/usr/bin/chromium',
    flags: [], verbose: false, runnerTimeout: 600, mounts: { '/repo/': REPO, '/shared/': SHARED },
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--runs') o.runs = Number(v());
    else if (a === '--warmup') o.warmup = Number(v());
    else if (a === '--batch') o.batches = v().split(',').map(Number);
    else if (a === '--runners') o.runners = v().split(',').filter(Boolean);
    else if (a === '--max-seconds') o.maxSeconds = Number(v());
    else if (a === '--runner-timeout') o.runnerTimeout = Number(v());
    else if (a === '--out') o.out = path.resolve(v());
    else if (a === '--chromium') o.chromium = v();
    else if (a === '--flag') o.flags.push(v());
    else if (a === '--mount') { const [p, d] = v().split('='); o.mounts[p] = path.resolve(d); }
    else if (a === '--verbose') o.verbose = true;
    else if (a === '-h' || a === '--help') {
      console.log(fs.readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').filter((l) => l.startsWith('//')).join('\n'));
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  for (const r of o.runners) if (!RUNNERS[r]) throw new Error(`unknown runner ${r} (have: ${Object.keys(RUNNERS).join(', ')})`);
  return o;
}

function withTimeout(p, secs, what) {
  let t;
  return Promise.race([
    p,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`${what}: timed out after ${secs} s`)), secs * 1000); }),
  ]).finally(() => clearTimeout(t));
}

export async function main(argv = process.argv.slice(2)) {
  const o = parseArgs(argv);
  const log = (...a) => console.error('[ort-web]', ...a);
  const server = await startServer(BENCH, { mounts: o.mounts, log: o.verbose });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'zp-chromium-'));
  const flags = [...QUIET_FLAGS, ...WEBGPU_FLAGS, ...o.flags];
  log(`chromium ${o.chromium}, server ${server.url}, flags: ${flags.join(' ')}`);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: o.chromium, headless: true, args: flags, timeout: 120000,
  });
  const result = {
    chromium: context.browser()?.version() ?? null,
    chromium_path: o.chromium,
    flags,
    host: { cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, platform: `${os.platform()} ${os.release()}` },
    options: { runs: o.runs, warmup: o.warmup, batches: o.batches, max_seconds: o.maxSeconds },
    runners: {},
  };
  const consoleLines = [];
  const ctx = {
    context,
    baseUrl: server.url,
    log,
    async newPage(rel) {
      const page = await context.newPage();
      page.on('console', (m) => {
        const line = `${m.type()}: ${m.text()}`;
        if (consoleLines.length < 200) consoleLines.push(line);
        if (o.verbose || m.type() === 'error') log(`console ${line}`);
      });
      page.on('pageerror', (e) => log(`page error: ${e.message}`));
      await page.goto(new URL(rel, server.url).href);
      return page;
    },
  };
  let failed = 0;
  try {
    const page = await ctx.newPage('ort-web/index.html');
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30000 });
    result.user_agent = await page.evaluate(() => navigator.userAgent);
    result.hardware_concurrency = await page.evaluate(() => navigator.hardwareConcurrency);
    result.adapter = await page.evaluate(() => window.ortBench.adapterInfo());
    await page.close();
    log(`navigator.gpu adapter: ${JSON.stringify({ ...result.adapter, features: undefined })}`);
    for (const name of o.runners) {
      const t0 = Date.now();
      try {
        result.runners[name] = await withTimeout(RUNNERS[name](ctx, o), o.runnerTimeout, name);
      } catch (e) {
        failed++;
        log(`${name} failed: ${e.message}`);
        result.runners[name] = { error: String(e.message || e) };
      }
      result.runners[name].wall_s = (Date.now() - t0) / 1000;
    }
  } finally {
    result.console = consoleLines;
    await context.close().catch(() => {});
    await server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  fs.mkdirSync(path.dirname(o.out), { recursive: true });
  fs.writeFileSync(o.out, JSON.stringify(result, null, 1) + '\n');
  log(`wrote ${o.out}`);
  for (const [name, r] of Object.entries(result.runners)) {
    console.log(r.error ? `${name}: FAILED ${r.error}`
      : `${name}: batch ${r.batch ?? '?'} median ${r.median_ms.toFixed(1)} ms (min ${r.min_ms?.toFixed(1)}, max ${r.max_ms?.toFixed(1)}, ${r.runs} runs)`);
  }
  return failed;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then((failed) => process.exit(failed ? 1 : 0), (e) => { console.error(e); process.exit(2); });
}
