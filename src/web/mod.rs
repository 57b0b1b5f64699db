//! The browser entry points (wasm-bindgen): a thin JavaScript face on the one [`crate::Session`].
//!
//! Everything below the calls here (decoding, preprocessing, tokenising, the kernels, pruning, the
//! scheduler) is the same code the native binary runs. Every call returns a promise and never
//! blocks the page: the GPU work is awaited on the browser's event loop.
//!
//! What the page's models share lives here: one GPU device and one kernel library for every model
//! loaded ([`runtime`]), one option parser ([`Options`]), one busy guard ([`Guarded`]).
//!
//! ```js
//! import init, { Session, TextModel } from "./pkg/zeroprune.js";
//! await init();
//! const session = await Session.create(modelBytes, configJson);
//! const r = await session.classify(imageBytes, { policy: "zero-tprune", flops: 0.65, compareDense: true });
//! r.top[0].name; r.latencyMs; r.steps[0].kept;
//! const text = await TextModel.create(textBytes, textConfig, tokenizerJson);  // the same GPU device
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::error::{Error, ErrorCode};
use crate::gpu::{AdapterChoice, GpuContext, KernelChoice, Kernels, TuneReport};
use crate::options::{Call, CallOptions};
use crate::prune::Policy;

mod image;
mod text;

pub use image::Session;
pub use text::TextModel;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// An error as JavaScript receives it: an `Error` whose `message` says what went wrong and whose
/// `code` ([`ErrorCode`], e.g. `"BAD_IMAGE"`) says what kind of error it is, for a program to
/// branch on.
pub struct WebError {
    code: ErrorCode,
    message: String,
}

impl WebError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WebError {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for WebError {
    fn from(e: Error) -> Self {
        WebError::new(e.code(), e.to_string())
    }
}

impl From<WebError> for JsValue {
    fn from(e: WebError) -> JsValue {
        let error = js_sys::Error::new(&e.message);
        error.set_name("ZeropruneError");
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&error, &"code".into(), &e.code.as_str().into());
        error.into()
    }
}

fn js_error(e: Error) -> WebError {
    e.into()
}

#[wasm_bindgen(typescript_custom_section)]
const ERROR_TYPES: &'static str = r#"
/** What kind of error a call failed with (the `code` of every Error this package throws). */
export type ErrorCode =
  | "NO_WEBGPU" | "ADAPTER_LIMIT" | "BAD_MODEL" | "BAD_IMAGE" | "BAD_TEXT" | "BAD_OPTIONS"
  | "TOO_LARGE" | "DEVICE_LOST" | "NON_FINITE" | "BUSY" | "STORAGE" | "GPU" | "DOWNLOAD";
/** Every promise of this package rejects with one of these. */
export interface ZeropruneError extends Error {
  name: "ZeropruneError";
  code: ErrorCode;
}

/** An image as the calls take it: the bytes of an encoded file (JPEG, PNG, WebP, BMP or GIF) or
 * decoded pixels. */
export type ImageInput = Uint8Array | ArrayBuffer | ImageData;

/** Each call's options: the pruning request (the command line's flags by the same names) and the
 * settings the call takes. A key a call does not take is an error, not ignored. */
export type ClassifyOptions = PruneRequest & Pick<CallSettings, "top" | "runs" | "compareDense" | "name" | "thresholds">;
export type ClassifyBatchOptions = PruneRequest & Pick<CallSettings, "top" | "batch" | "thresholds">;
export type EvaluateOptions = PruneRequest & Pick<CallSettings, "batch" | "thresholds">;
export type BenchOptions = PruneRequest & Pick<CallSettings, "runs" | "batch" | "thresholds">;
export type EmbedOptions = PruneRequest & Pick<CallSettings, "thresholds" | "dropped">;
export type ImageEmbedOptions = PruneRequest & Pick<CallSettings, "batch" | "thresholds">;

type RenameItem<K extends string, U extends string> = K extends `${infer A}item${infer B}` ? `${A}${U}${B}` : K;
/** A report whose names say "item" (`items`, `gflops_per_item`), as `zeroprune eval --json`
 * names them for a unit: `WithUnit<Quality, "image">` has `images`, `gflops_per_image`. */
export type WithUnit<T, U extends string> = { [K in keyof T as RenameItem<K & string, U>]: T[K] };
/** What `session.evaluate` resolves to: `zeroprune eval`'s figures by its names. */
export type EvaluateResult = WithUnit<Quality, "image">;
"#;

/// `limits()`: what the library refuses, so that a page can check a file's size before reading it:
/// `{maxImageFileBytes, maxImagePixels, maxModelFileBytes}` (the last for the browser build).
#[wasm_bindgen(unchecked_return_type = "Limits")]
pub fn limits() -> JsValue {
    /// What the library refuses, in bytes and pixels.
    #[derive(Serialize, tsify::Tsify)]
    #[serde(rename_all = "camelCase")]
    struct Limits {
        max_image_file_bytes: u64,
        max_image_pixels: u64,
        max_model_file_bytes: u64,
    }
    to_js(&Limits {
        max_image_file_bytes: crate::limits::MAX_IMAGE_FILE_BYTES,
        max_image_pixels: crate::limits::MAX_IMAGE_PIXELS,
        max_model_file_bytes: crate::limits::MAX_BROWSER_MODEL_BYTES,
    })
    .unwrap_or(JsValue::NULL)
}

/// `policies(depth)`: every registered policy (`{name, help, reads, merges, keep_rule,
/// default_blocks, default_shape, options}`, default blocks for a model of `depth` blocks) and the
/// recommended policy by FLOPs level (`{flops, policy}`): what the page's lists are filled from.
#[wasm_bindgen(unchecked_return_type = "PolicyList")]
pub fn policies(depth: usize) -> JsValue {
    to_js(&PolicyList::of(depth, crate::model::Modality::Image)).unwrap_or(JsValue::NULL)
}

/// The policy registry as the page lists it.
#[derive(Serialize, tsify::Tsify)]
struct PolicyList {
    policies: Vec<crate::prune::PolicyInfo>,
    recommended: Vec<Recommended>,
}

impl PolicyList {
    fn of(depth: usize, modality: crate::model::Modality) -> Self {
        PolicyList {
            policies: Policy::all().iter().map(|p| p.info(depth)).collect(),
            recommended: Policy::recommended_levels(modality)
                .iter()
                .map(|&(flops, p)| Recommended {
                    flops,
                    policy: p.name(),
                })
                .collect(),
        }
    }
}

/// The recommended policy at one FLOPs level.
#[derive(Serialize, tsify::Tsify)]
struct Recommended {
    flops: f64,
    policy: &'static str,
}

/// A model file must fit the browser's limit, checked before it is parsed.
fn check_model_bytes(len: usize) -> Result<(), WebError> {
    let max = crate::limits::MAX_BROWSER_MODEL_BYTES;
    if len as u64 > max {
        return Err(WebError::new(
            ErrorCode::TooLarge,
            format!(
                "model.safetensors: {len} bytes is over the browser's limit of {max} bytes \
                 (a wasm32 page has 4 GiB of memory); use the native binary for this model"
            ),
        ));
    }
    Ok(())
}

/// Milliseconds on the page's clock (`performance.now()`).
fn now_ms() -> f64 {
    crate::gpu::program::now_s() * 1e3
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, WebError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            WebError::new(
                ErrorCode::Gpu,
                format!("could not build the result object: {e}"),
            )
        })
}

/// The page's GPU: one device and one kernel library (pipelines, the kernel choice measured once)
/// for every model it loads.
struct Runtime {
    kernels: Kernels,
}

thread_local! {
    static RUNTIME: RefCell<Option<Runtime>> = const { RefCell::new(None) };
    /// A kernel choice kept from an earlier visit ([`use_kernel_choice`]), adopted by the next
    /// device opened on the adapter it was measured on.
    static SAVED_CHOICE: RefCell<Option<SavedKernelChoice>> = const { RefCell::new(None) };
    /// Whether the current device's kernel choice was adopted from storage rather than measured.
    static CHOICE_ADOPTED: RefCell<bool> = const { RefCell::new(false) };
    /// GPU devices this page has opened (a lost device is replaced by a new one).
    static DEVICES_OPENED: RefCell<usize> = const { RefCell::new(0) };
}

/// The page's kernel library, on its one device: opened by the first model, shared by the next;
/// a lost device is replaced by a new one when a model is next created.
async fn runtime() -> Result<Kernels, WebError> {
    let current = RUNTIME.with(|r| {
        r.borrow()
            .as_ref()
            .filter(|rt| rt.kernels.gpu().lost().is_none())
            .map(|rt| rt.kernels.clone())
    });
    if let Some(k) = current {
        return Ok(k);
    }
    let choice = AdapterChoice {
        backends: Some(wgpu::Backends::BROWSER_WEBGPU),
        name: None,
    };
    let gpu = GpuContext::new(&choice).await.map_err(js_error)?;
    let kernels = Kernels::new(&gpu);
    let saved = SAVED_CHOICE.with(|s| s.borrow().clone());
    let adopted = saved.is_some_and(|s| {
        let fits = s.adapter == gpu.describe() && s.version == env!("CARGO_PKG_VERSION");
        if fits {
            kernels.adopt(s.choice, s.report);
        }
        fits
    });
    CHOICE_ADOPTED.with(|a| *a.borrow_mut() = adopted);
    RUNTIME.with(|r| {
        *r.borrow_mut() = Some(Runtime {
            kernels: kernels.clone(),
        })
    });
    DEVICES_OPENED.with(|n| *n.borrow_mut() += 1);
    Ok(kernels)
}

/// The kernel choice measured on an adapter, as a page keeps it between visits (the native binary
/// keeps it on disk): measuring takes seconds on a fast GPU and tens of seconds on a software one.
#[derive(Clone, Serialize, Deserialize, tsify::Tsify)]
#[serde(deny_unknown_fields)]
struct SavedKernelChoice {
    /// The adapter it was measured on (`gpu().adapter`).
    adapter: String,
    /// The package version that measured it: another version measures again.
    version: String,
    #[tsify(type = "unknown")]
    choice: KernelChoice,
    #[tsify(type = "unknown")]
    report: TuneReport,
}

/// `kernelChoice()`: the kernel choice of the page's device, measured or adopted, to keep for the
/// next visit (`useKernelChoice`); null before a model is loaded, or where the adapter could not
/// time the candidates.
#[wasm_bindgen(js_name = kernelChoice, unchecked_return_type = "SavedKernelChoice | null")]
pub fn kernel_choice() -> JsValue {
    let kernels = RUNTIME.with(|r| r.borrow().as_ref().map(|rt| rt.kernels.clone()));
    kernels
        .and_then(|k| {
            let report = k.tune_report()?;
            to_js(&SavedKernelChoice {
                adapter: k.gpu().describe(),
                version: env!("CARGO_PKG_VERSION").into(),
                choice: k.choice(),
                report,
            })
            .ok()
        })
        .unwrap_or(JsValue::NULL)
}

/// `useKernelChoice(saved)`: a kernel choice kept from an earlier visit (`kernelChoice()`), taken
/// by the next device opened instead of measuring again where it was measured on the same adapter
/// by the same package version (else the choice is measured as usual). Call it before the first
/// model is created. A value that is not a saved choice is an error (code BAD_OPTIONS).
#[wasm_bindgen(js_name = useKernelChoice)]
pub fn use_kernel_choice(
    #[wasm_bindgen(unchecked_param_type = "SavedKernelChoice")] saved: JsValue,
) -> Result<(), WebError> {
    let saved: SavedKernelChoice = serde_wasm_bindgen::from_value(saved).map_err(|e| {
        WebError::new(
            ErrorCode::BadOptions,
            format!("useKernelChoice: not a kernel choice from kernelChoice(): {e}"),
        )
    })?;
    SAVED_CHOICE.with(|s| *s.borrow_mut() = Some(saved));
    Ok(())
}

/// `gpu()`: the page's GPU as the models share it: `{adapter, devicesOpened, gemmKernel,
/// gemmKernelSmall, fusedAttention, subgroupReductions, kernelChoiceStored}` (`adapter` null
/// before a model is loaded; `kernelChoiceStored` whether the choice came from
/// `useKernelChoice` rather than being measured). `devicesOpened` counts the devices the page has opened: one, however many models are
/// loaded, unless a device was lost and replaced.
#[wasm_bindgen(unchecked_return_type = "PageGpu")]
pub fn gpu() -> JsValue {
    /// The page's shared GPU and the kernel choice measured on it (null before a model loads).
    #[derive(Serialize, tsify::Tsify)]
    #[serde(rename_all = "camelCase")]
    struct PageGpu {
        adapter: Option<String>,
        devices_opened: usize,
        gemm_kernel: Option<String>,
        gemm_kernel_small: Option<String>,
        fused_attention: Option<bool>,
        subgroup_reductions: Option<bool>,
        kernel_choice_stored: Option<bool>,
    }
    let kernels = RUNTIME.with(|r| r.borrow().as_ref().map(|rt| rt.kernels.clone()));
    let choice = kernels.as_ref().map(Kernels::choice);
    to_js(&PageGpu {
        adapter: kernels.as_ref().map(|k| k.gpu().describe()),
        devices_opened: DEVICES_OPENED.with(|n| *n.borrow()),
        gemm_kernel: choice.map(|c| c.gemm.name()),
        gemm_kernel_small: choice.map(|c| c.gemm_small.name()),
        fused_attention: choice.map(|c| c.fused_attention),
        subgroup_reductions: kernels.as_ref().map(Kernels::subgroup_reductions),
        kernel_choice_stored: kernels
            .as_ref()
            .map(|_| CHOICE_ADOPTED.with(|a| *a.borrow())),
    })
    .unwrap_or(JsValue::NULL)
}

/// A model's state, taken out while a call runs: an overlapping call gets a clear error instead
/// of a panic.
struct Guarded<T>(Rc<RefCell<Option<T>>>);

impl<T> Clone for Guarded<T> {
    fn clone(&self) -> Self {
        Guarded(self.0.clone())
    }
}

impl<T: 'static> Guarded<T> {
    fn new(value: T) -> Self {
        Guarded(Rc::new(RefCell::new(Some(value))))
    }

    /// Run `call` on the state, as a promise; the state is back when it settles.
    fn call<F, Fut>(&self, call: F) -> js_sys::Promise
    where
        F: FnOnce(T) -> Fut + 'static,
        Fut: std::future::Future<Output = (T, Result<JsValue, WebError>)> + 'static,
    {
        let slot = self.0.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let state = slot.borrow_mut().take().ok_or_else(|| {
                JsValue::from(WebError::new(
                    ErrorCode::Busy,
                    "the model is busy with another call: await it before starting the next",
                ))
            })?;
            let (state, result) = call(state).await;
            slot.borrow_mut().replace(state);
            result.map_err(JsValue::from)
        })
    }

    /// The state, for a quick synchronous look (busy: an error).
    fn with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, WebError> {
        let inner = self.0.borrow();
        let state = inner.as_ref().ok_or_else(|| {
            WebError::new(
                ErrorCode::Busy,
                "the model is busy with another call: await it before starting the next",
            )
        })?;
        Ok(f(state))
    }
}

/// The options of a call: a JavaScript object through the one options parser
/// ([`crate::options::CallOptions`]), taking only the run settings in `takes`.
struct Options;

impl Options {
    fn parse(options: Option<JsValue>, call: &Call, depth: usize) -> Result<CallOptions, WebError> {
        let value = match options {
            Some(o) if !o.is_undefined() && !o.is_null() => {
                serde_wasm_bindgen::from_value::<serde_json::Value>(o)
                    .map_err(|e| WebError::new(ErrorCode::BadOptions, format!("options: {e}")))?
            }
            _ => serde_json::Value::Null,
        };
        CallOptions::parse(&value, call.takes, depth).map_err(js_error)
    }
}

/// The median of `v`.
fn median(v: &[f64]) -> f64 {
    crate::eval::stats::median(v)
}
