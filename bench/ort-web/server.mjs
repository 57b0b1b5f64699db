// A tiny static file server on 127.0.0.1 for the browser benchmarks (no external hosts).
// Serves files under `root` (bench/ by default: ort-web/, node_modules/, out/), with the COOP/COEP headers
// that make the page cross-origin isolated (SharedArrayBuffer, so onnxruntime-web's WASM EP can use threads).
//
//   import { startServer } from './server.mjs';
//   const srv = await startServer('/path/to/bench');   // srv.url = 'http://127.0.0.1:PORT/'
//   ... srv.close();
//
// `mounts` maps extra URL prefixes to directories, e.g. { '/pkg/': '/work/main/web/pkg' } for another runner.
// Standalone: `node bench/ort-web/server.mjs [PORT]` serves bench/ until interrupted.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.f32': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.map': 'application/json',
  '.md': 'text/plain; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.tsv': 'text/plain; charset=utf-8',
  '.css': 'text/css',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.JPEG': 'image/jpeg',
};

export function startServer(root, { port = 0, mounts = {}, log = false } = {}) {
  const table = [...Object.entries(mounts), ['/', root]]
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : prefix + '/', path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length);
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    let rel = decodeURIComponent(url.pathname);
    if (rel.endsWith('/')) rel += 'index.html';
    const [prefix, dir] = table.find(([p]) => rel.startsWith(p));
    const file = path.resolve(dir, '.' + rel.slice(prefix.length - 1));
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cross-Origin-Resource-Policy': 'same-origin',
      'Cache-Control': 'no-store',
    };
    if (file !== dir && !file.startsWith(dir + path.sep)) {
      res.writeHead(403, headers).end('forbidden');
      return;
    }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) {
        if (log) console.error(`[server] 404 ${url.pathname}`);
        res.writeHead(404, headers).end('not found');
        return;
      }
      if (log) console.error(`[server] 200 ${url.pathname}`);
      headers['Content-Type'] = TYPES[path.extname(file)] || 'application/octet-stream';
      headers['Content-Length'] = st.size;
      res.writeHead(200, headers);
      if (req.method === 'HEAD') res.end();
      else fs.createReadStream(file).pipe(res);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: p } = server.address();
      resolve({ url: `http://127.0.0.1:${p}/`, port: p, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const srv = await startServer(root, { port: Number(process.argv[2] || 8089), log: true });
  console.log(`serving ${root} at ${srv.url}`);
}
