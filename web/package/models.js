// A model's files by URL: a Hugging Face folder URL (".../resolve/main/") or a user's own folder
// or `.safetensors` file. The weights come through model-store.js (kept across visits); the small
// JSON files are fetched each time. Runs on any thread: the worker uses it, and so can a page
// that calls the wasm API directly.
//
//   const files = await fetchImageModel("https://huggingface.co/timm/deit_tiny_patch16_224.fb_in1k/resolve/main/");
//   const session = await Session.create(files.model, files.config);

import { coded, fetchModelFile } from "./model-store.js";

// `url` as a folder and its weights file: a folder URL (with or without the trailing slash) holds
// `model.safetensors`; a `.safetensors` URL is the weights file of the folder it is in.
function folderOf(url) {
  const weights = url.endsWith(".safetensors") ? url : (url.endsWith("/") ? url : url + "/") + "model.safetensors";
  return { dir: weights.replace(/[^/]*$/, ""), weights };
}

// A small text file of the folder: undefined where it is missing (404), an Error with code
// DOWNLOAD where it is required, or where the server fails otherwise.
async function textFile(dir, name, required) {
  let resp;
  try {
    resp = await fetch(dir + name);
  } catch (e) {
    throw coded("DOWNLOAD", `${dir}${name}: ${e.message}`);
  }
  if (resp.ok) return resp.text();
  if (required || (resp.status !== 404 && resp.status !== 403)) {
    throw coded("DOWNLOAD", `${dir}${name}: HTTP ${resp.status}${required ? " (the folder must have it)" : ""}`);
  }
  return undefined;
}

/**
 * An image model's files: `{model, config, loaded}`, `model` the weights' bytes, `config` the
 * `config.json` text (undefined where the folder has none: timm's single-file checkpoints),
 * `loaded` `{url, bytes, fromStorage, stored, storeError}`. Options as fetchModelFile's.
 */
export async function fetchImageModel(url, options = {}) {
  const { dir, weights } = folderOf(url);
  const [config, file] = await Promise.all([textFile(dir, "config.json", false), fetchModelFile(weights, options)]);
  return { model: file.bytes, config, loaded: loadedOf(weights, file) };
}

/**
 * A text encoder's files (a BERT-family folder, sentence-transformers or not): `{model, config,
 * tokenizer, files, loaded}`; `config.json` and `tokenizer.json` are required, the
 * sentence-transformers files (`modules.json`, `1_Pooling/config.json`,
 * `sentence_bert_config.json`) are read where present.
 */
export async function fetchTextModel(url, options = {}) {
  const { dir, weights } = folderOf(url);
  const [config, tokenizer, modules, pooling, sentenceBert, file] = await Promise.all([
    textFile(dir, "config.json", true),
    textFile(dir, "tokenizer.json", true),
    textFile(dir, "modules.json", false),
    textFile(dir, "1_Pooling/config.json", false),
    textFile(dir, "sentence_bert_config.json", false),
    fetchModelFile(weights, options),
  ]);
  return { model: file.bytes, config, tokenizer, files: { modules, pooling, sentenceBert }, loaded: loadedOf(weights, file) };
}

function loadedOf(url, file) {
  const e = file.storeError;
  return {
    url,
    bytes: file.bytes.length,
    fromStorage: file.fromStorage,
    stored: file.stored,
    storeError: e ? { name: e.name, code: e.code, message: e.message } : null,
  };
}
