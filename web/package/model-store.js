// Models kept across visits. A model file fetched from a URL (a hub folder's file, or a user's own)
// is stored in the browser's origin private file system (OPFS) and read from there on the next
// visit, so each model downloads once. Progress events while downloading; the free space is
// checked before storing; a store that fails (storage full, or denied) leaves the download usable
// and says why in an Error with code "STORAGE" (the package's error codes: ErrorCode in
// zeroprune.d.ts). Works on the page and in a worker.
//
//   import { fetchModelFile } from "zeroprune";
//   const { bytes, fromStorage } = await fetchModelFile(url, { onProgress: (p) => bar.value = p.loaded / p.total });
//   const session = await Session.create(bytes, configJson);

const DIR = "zeroprune-models";

/** An Error as the package throws them: named ZeropruneError, with a stable `code`. */
export function coded(code, message) {
  const e = new Error(message);
  e.name = "ZeropruneError";
  e.code = code;
  return e;
}

const mib = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${Math.max(0, Math.round(n))} bytes`);

// A stored file's name: the SHA-256 of the absolute URL (any URL, no path rules to escape).
async function keyOf(url) {
  const absolute = new URL(url, location.href).href;
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(absolute));
  return [...new Uint8Array(hash)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function storeDir() {
  if (!navigator.storage || !navigator.storage.getDirectory) {
    throw coded("STORAGE", "this browser has no origin private file system (OPFS) to keep models in");
  }
  try {
    const root = await navigator.storage.getDirectory();
    return await root.getDirectoryHandle(DIR, { create: true });
  } catch (e) {
    throw coded("STORAGE", `the browser's storage is not available: ${e.message}`);
  }
}

/** The stored copy of `url` as bytes, or null where none is stored (or storage is unavailable). */
export async function storedModelFile(url) {
  try {
    const dir = await storeDir();
    const file = await (await dir.getFileHandle(await keyOf(url))).getFile();
    return new Uint8Array(await file.arrayBuffer());
  } catch {
    return null;
  }
}

// Keep `bytes` as `url`'s copy: refused before writing where the origin's quota has no room; the
// writable stream commits on close, so an interrupted store leaves no partial file.
async function store(url, bytes) {
  const estimate = navigator.storage && navigator.storage.estimate ? await navigator.storage.estimate() : {};
  const free = (estimate.quota ?? Infinity) - (estimate.usage ?? 0);
  if (bytes.length > free) {
    throw coded("STORAGE", `not enough storage to keep the model: ${mib(bytes.length)} needed, ${mib(free)} free`);
  }
  const dir = await storeDir();
  try {
    const handle = await dir.getFileHandle(await keyOf(url), { create: true });
    const writable = await handle.createWritable();
    await writable.write(bytes);
    await writable.close();
  } catch (e) {
    throw coded("STORAGE", `could not keep the model: ${e.message}`);
  }
}

/**
 * `url`'s bytes: from storage where an earlier visit kept them (no network request), else
 * downloaded and kept. Options: `onProgress({loaded, total, fromStorage})` per chunk received;
 * `maxBytes`, a size refused before downloading ("TOO_LARGE"); `store` (true), whether to keep a
 * download. Resolves to `{bytes, fromStorage, stored, storeError}`: `storeError` is the "STORAGE"
 * Error where keeping it failed (the bytes are still there). A failed download rejects with
 * "DOWNLOAD".
 */
export async function fetchModelFile(url, { onProgress = () => {}, maxBytes = Infinity, store: keep = true } = {}) {
  const stored = await storedModelFile(url);
  if (stored) {
    onProgress({ loaded: stored.length, total: stored.length, fromStorage: true });
    return { bytes: stored, fromStorage: true, stored: true, storeError: null };
  }
  let resp;
  try {
    resp = await fetch(url);
  } catch (e) {
    throw coded("DOWNLOAD", `${url}: ${e.message}`);
  }
  if (!resp.ok) throw coded("DOWNLOAD", `${url}: HTTP ${resp.status}`);
  const total = Number(resp.headers.get("content-length")) || 0;
  const tooLarge = (n) => coded("TOO_LARGE", `${url}: ${mib(n)} is over the limit of ${mib(maxBytes)} for a model file in the browser`);
  if (total > maxBytes) throw tooLarge(total);
  const chunks = [];
  let loaded = 0;
  const reader = resp.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    if (loaded > maxBytes) {
      await reader.cancel();
      throw tooLarge(loaded);
    }
    onProgress({ loaded, total: total || loaded, fromStorage: false });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  let storeError = null;
  if (keep) {
    try {
      await store(url, bytes);
    } catch (e) {
      storeError = e;
    }
  }
  return { bytes, fromStorage: false, stored: keep && !storeError, storeError };
}

/** A small JSON record kept beside the models under `name` (the kernel choice), or null. */
export async function storedRecord(name) {
  try {
    const dir = await storeDir();
    const file = await (await dir.getFileHandle(`${name}.json`)).getFile();
    return JSON.parse(await file.text());
  } catch {
    return null;
  }
}

/** Keep `value` as the record `name`; false where storage is unavailable or full. */
export async function storeRecord(name, value) {
  try {
    const dir = await storeDir();
    const writable = await (await dir.getFileHandle(`${name}.json`, { create: true })).createWritable();
    await writable.write(JSON.stringify(value));
    await writable.close();
    return true;
  } catch {
    return false;
  }
}

/** Forget every kept model (and the kept kernel choice). */
export async function clearStoredModels() {
  if (!navigator.storage || !navigator.storage.getDirectory) return;
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(DIR, { recursive: true }).catch(() => {});
}
