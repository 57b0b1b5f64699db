// The package's types. The wasm API's (Session, TextModel, their options and results, ErrorCode)
// are generated from the Rust types into zeroprune.d.ts (tsify and wasm-bindgen); the types below
// are the JavaScript parts', and the worker's calls are derived from the wasm API's, so the two
// cannot drift apart.
import type {
  ErrorCode, Limits, PageGpu, PolicyList, Precision, SentenceTransformerFiles, Session, SessionInfo,
  TextInfo, TextModel, ZeropruneError,
} from "./zeroprune.js";

export * from "./zeroprune.js";
/** Load the wasm module on this thread (the direct API; the worker loads its own). */
export { default as init } from "./zeroprune.js";

/** A model file's download (or read from storage) so far, in bytes. */
export interface Progress {
  loaded: number;
  total: number;
  fromStorage: boolean;
}

export interface FetchOptions {
  onProgress?: (progress: Progress) => void;
  /** Refused before downloading (code TOO_LARGE) over this many bytes. */
  maxBytes?: number;
  /** Keep the download for the next visit (true). */
  store?: boolean;
}

/** A model file: from this browser's storage (no request), or downloaded and kept. */
export interface FetchedFile {
  bytes: Uint8Array;
  fromStorage: boolean;
  stored: boolean;
  /** Why a download was not kept (code STORAGE: no room, or storage denied); the bytes are still there. */
  storeError: ZeropruneError | null;
}

/** `url`'s bytes, from the origin private file system where an earlier visit kept them. */
export function fetchModelFile(url: string, options?: FetchOptions): Promise<FetchedFile>;
/** The stored copy of `url`, or null. */
export function storedModelFile(url: string): Promise<Uint8Array | null>;
/** Forget every kept model file. */
export function clearStoredModels(): Promise<void>;

/** Where a model's weights came from. */
export interface Loaded {
  url: string;
  bytes: number;
  fromStorage: boolean;
  stored: boolean;
  storeError: { name: string; code: ErrorCode; message: string } | null;
}

/** An image model's files: `model.safetensors` and its `config.json` (timm or Hugging Face layout). */
export interface ImageModelFiles {
  model: Uint8Array | ArrayBuffer;
  config?: string;
}

/** A text encoder's files: `model.safetensors`, `config.json`, `tokenizer.json` and the
 * sentence-transformers files where the folder has them. */
export interface TextModelFiles {
  model: Uint8Array | ArrayBuffer;
  config: string;
  tokenizer: string;
  files?: SentenceTransformerFiles;
}

/** An image model's files by URL (a folder, e.g. a Hugging Face ".../resolve/main/", or a
 * `.safetensors` file); the weights kept across visits. */
export function fetchImageModel(url: string, options?: FetchOptions): Promise<ImageModelFiles & { model: Uint8Array; loaded: Loaded }>;
/** A text encoder's files by folder URL; the weights kept across visits. */
export function fetchTextModel(url: string, options?: FetchOptions): Promise<TextModelFiles & { model: Uint8Array; loaded: Loaded }>;

/** The calls `K` of `T`, each resolving to what `T`'s resolves to. */
type Remote<T, K extends keyof T> = {
  [M in K]: T[M] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
};

export interface LoadOptions {
  /** Download progress of the weights. */
  onProgress?: (progress: Progress) => void;
  /** What the weights are stored as on the GPU ("f32"). */
  precision?: Precision;
}

interface RemoteModel<Info> {
  readonly info: Info;
  /** Where the weights came from (null for bytes the page gave). */
  readonly loaded: Loaded | null;
  /** Milliseconds the worker took to parse the model and upload it to the GPU. */
  readonly createMs: number;
  /** Free the model in the worker; later calls reject. */
  dispose(): Promise<void>;
}

/** An image model in the worker: Session's calls. */
export interface RemoteSession
  extends RemoteModel<SessionInfo>,
    Remote<Session, "classify" | "classifyBatch" | "embed" | "evaluate" | "bench" | "simulateDeviceLoss"> {}

/** A text encoder in the worker: TextModel's calls. */
export interface RemoteTextModel extends RemoteModel<TextInfo>, Remote<TextModel, "embed"> {}

/** The package in a dedicated worker: every call a promise, the page's main thread free. */
export interface ZeropruneWorker {
  /** A URL (a model folder or a `.safetensors` file; the weights kept across visits) or the files'
   * contents (the bytes are transferred to the worker: the page's buffer is detached). */
  loadImageModel(source: string | ImageModelFiles, options?: LoadOptions): Promise<RemoteSession>;
  loadTextModel(source: string | TextModelFiles, options?: LoadOptions): Promise<RemoteTextModel>;
  limits(): Promise<Limits>;
  policies(depth: number): Promise<PolicyList>;
  gpu(): Promise<PageGpu>;
  clearStoredModels(): Promise<void>;
  /** Stop the worker and every model in it. */
  terminate(): void;
}

/** Start the package in a dedicated module worker. `worker`: one made by the application from
 * this package's `worker.js` (for bundlers that must see the `new Worker(new URL(...))`). */
export function createWorker(options?: { worker?: Worker }): Promise<ZeropruneWorker>;
