// The npm package as a web developer gets it: `npm pack` web/pkg (scripts/build-web.sh builds it),
// install the tarball into an empty project, type-check the package README's examples against its
// declarations (tsc --strict), then serve the project and, in headless Chromium, classify a real
// full-size ImageNet photo and embed a real movie-review sentence through the installed package's
// worker; both must equal the native binary's. Reports the package's size.
//
//   node web/tests/package.mjs [--bin $CARGO_TARGET_DIR/release/zeroprune]
import { spawnSync } from "node:child_process";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { launch } from "./chromium.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const shared = resolve(repo, "../shared");
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, "target");
const bin = args.bin ? resolve(args.bin) : join(targetDir, "release/zeroprune");
const out = resolve(repo, args.out || "web/tests/out");
const TIMEOUT = 10 * 60 * 1000;
const PHOTO = "imagenet-samples-400/n01514859_hen.JPEG";

let failures = 0;
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
}

function run(cmd, argv, cwd) {
  const r = spawnSync(cmd, argv, {
    cwd,
    encoding: "utf8",
    maxBuffer: 64 << 20,
    env: { ...process.env, WGPU_BACKEND: process.env.WGPU_BACKEND || "vulkan" },
  });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(" ")} failed (${r.status}): ${r.stderr || r.stdout || r.error}`);
  return r.stdout;
}

// A static server for the project, with ../shared/models under /models/ and ../shared/data under /data/.
function serve(root) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const [base, rel] = path.startsWith("/models/") ? [join(shared, "models"), path.slice(8)]
      : path.startsWith("/data/") ? [join(shared, "data"), path.slice(6)] : [root, path.slice(1) || "index.html"];
    const file = normalize(join(base, rel));
    if (!file.startsWith(base) || !statSync(file, { throwIfNoEntry: false })?.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": types[extname(file)] || "application/octet-stream", "content-length": statSync(file).size });
    createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok([server, `http://127.0.0.1:${server.address().port}/`])));
}

async function main() {
  const pkgDir = join(repo, "web/pkg");
  const version = readFileSync(join(repo, "Cargo.toml"), "utf8").match(/^version = "([^"]+)"/m)[1];
  const manifest = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
  check(manifest.version === version, `the package's version is the crate's (${manifest.version})`);

  // npm pack, then an empty project that installs the tarball.
  const work = mkdtempSync(join(tmpdir(), "zeroprune-package-"));
  const [packed] = JSON.parse(run("npm", ["pack", pkgDir, "--json", "--pack-destination", work], work));
  const tarball = join(work, packed.filename);
  console.log(`  package: ${packed.filename}, ${(packed.size / 2 ** 20).toFixed(2)} MiB packed, ` +
    `${(packed.unpackedSize / 2 ** 20).toFixed(2)} MiB unpacked, ${packed.entryCount} files`);
  const app = join(work, "app");
  mkdirSync(app);
  run("npm", ["init", "-y"], app);
  run("npm", ["install", "--no-audit", "--no-fund", tarball], app);
  const installed = join(app, "node_modules/zeroprune");
  check(statSync(join(installed, "zeroprune_bg.wasm"), { throwIfNoEntry: false })?.isFile() === true,
    `npm install of the tarball into an empty project: ${installed}`);

  // The README's examples type-check against the installed declarations.
  run("npm", ["install", "--no-audit", "--no-fund", "typescript@5"], app);
  const readme = readFileSync(join(installed, "README.md"), "utf8");
  const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  examples.forEach((code, i) => writeFileSync(join(app, `example${i}.ts`), code));
  const tsc = spawnSync(join(app, "node_modules/.bin/tsc"), ["--noEmit", "--strict", "--target", "es2022", "--module", "es2022",
    "--moduleResolution", "bundler", "--lib", "es2022,dom,esnext.disposable", ...examples.map((_, i) => `example${i}.ts`)], { cwd: app, encoding: "utf8" });
  check(examples.length >= 3 && tsc.status === 0,
    `the package README's ${examples.length} TypeScript examples type-check against its declarations (tsc --strict)` +
    (tsc.status === 0 ? "" : `:\n${tsc.stdout}${tsc.stderr}`));

  // The project's page: the installed package by its name, through its worker.
  const sentence = readFileSync(join(shared, "data/sentence-polarity/sentences.tsv"), "utf8")
    .split("\n").find((l) => l.startsWith("test\t")).split("\t")[2];
  writeFileSync(join(app, "index.html"), `<!doctype html><meta charset="utf-8">
<script type="importmap">{ "imports": { "zeroprune": "./node_modules/zeroprune/index.js" } }</script>
<script type="module" src="main.js"></script>`);
  writeFileSync(join(app, "main.js"), `import { createWorker } from "zeroprune";
const zp = await createWorker();
try {
  const deit = await zp.loadImageModel("/models/deit-tiny-patch16-224/");
  const image = new Uint8Array(await (await fetch("/data/${PHOTO}")).arrayBuffer());
  const dense = await deit.classify(image, { top: 1 });
  const pruned = await deit.classify(image, { policy: "tome", flops: 0.65, top: 1 });
  const minilm = await zp.loadTextModel("/models/all-minilm-l6-v2/");
  const text = await minilm.embed([${JSON.stringify(sentence)}]);
  window.result = { dense: dense.top[0], pruned: pruned.top[0], kept: pruned.steps.map((s) => s.kept), embedding: text.embeddings[0], tokens: text.tokens[0] };
} catch (e) {
  window.result = { error: e.code + ": " + e.message };
}
`);
  const nativeDense = JSON.parse(run(bin, ["classify", "--json", "--top", "1", "--model", join(shared, "models/deit-tiny-patch16-224"), join(shared, "data", PHOTO)])).images[0];
  const nativePruned = JSON.parse(run(bin, ["classify", "--json", "--top", "1", "--policy", "tome", "--flops", "0.65",
    "--model", join(shared, "models/deit-tiny-patch16-224"), join(shared, "data", PHOTO)])).images[0];
  const nativeText = JSON.parse(run(bin, ["embed", "--json", "--model", join(shared, "models/all-minilm-l6-v2"), sentence]));

  const [server, url] = await serve(app);
  const browser = await launch();
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.result, null, { timeout: TIMEOUT, polling: 250 });
    const r = await page.evaluate(() => window.result);
    if (r.error) {
      check(false, `the installed package in Chromium: ${r.error}`);
    } else {
      check(r.dense.class === nativeDense.top[0].class && r.pruned.class === nativePruned.top[0].class &&
        JSON.stringify(r.kept) === JSON.stringify(nativePruned.kept),
        `the installed package classifies ${PHOTO} in Chromium: ${r.dense.name} dense, ${r.pruned.name} with tome at 65% ` +
        `(native: ${nativeDense.top[0].name}, ${nativePruned.top[0].name}; kept tokens equal at every step)`);
      const n = nativeText.embeddings[0];
      const dot = r.embedding.reduce((s, x, i) => s + x * n[i], 0);
      const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
      const cosine = dot / (norm(r.embedding) * norm(n));
      check(cosine >= 0.9999 && r.tokens === nativeText.tokens[0],
        `the installed package embeds a movie-review sentence (${r.tokens} tokens): cosine to native ${cosine.toFixed(7)}`);
    }
  } finally {
    await browser.close();
    server.close();
  }
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "package.json"), JSON.stringify({
    failures, name: packed.filename, packedBytes: packed.size, unpackedBytes: packed.unpackedSize, files: packed.entryCount,
  }, null, 2));
  console.log(failures ? `\n${failures} check(s) failed` : "\nall package checks passed");
  process.exit(failures ? 1 : 0);
}

main().catch((e) => {
  console.error(`package test failed: ${e.stack || e}`);
  process.exit(1);
});
