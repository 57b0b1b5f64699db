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

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::{Error, ErrorCode};
use crate::gpu::{AdapterChoice, GpuContext, Kernels};
use crate::options::CallOptions;
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
"#;

/// `limits()`: what the library refuses, so that a page can check a file's size before reading it:
/// `{maxImageFileBytes, maxImagePixels, maxModelFileBytes}` (the last for the browser build).
#[wasm_bindgen]
pub fn limits() -> JsValue {
    #[derive(Serialize)]
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
#[wasm_bindgen]
pub fn policies(depth: usize) -> JsValue {
    to_js(&PolicyList::of(depth)).unwrap_or(JsValue::NULL)
}

/// The policy registry as the page lists it.
#[derive(Serialize)]
struct PolicyList {
    policies: Vec<crate::prune::PolicyInfo>,
    recommended: Vec<Recommended>,
}

impl PolicyList {
    fn of(depth: usize) -> Self {
        PolicyList {
            policies: Policy::all().iter().map(|p| p.info(depth)).collect(),
            recommended: Policy::recommended_levels()
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
#[derive(Serialize)]
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
    RUNTIME.with(|r| {
        *r.borrow_mut() = Some(Runtime {
            kernels: kernels.clone(),
        })
    });
    DEVICES_OPENED.with(|n| *n.borrow_mut() += 1);
    Ok(kernels)
}

/// `gpu()`: the page's GPU as the models share it: `{adapter, devicesOpened, gemmKernel,
/// gemmKernelSmall, fusedAttention, subgroupReductions}` (`adapter` null before a model is
/// loaded). `devicesOpened` counts the devices the page has opened: one, however many models are
/// loaded, unless a device was lost and replaced.
#[wasm_bindgen]
pub fn gpu() -> JsValue {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct PageGpu {
        adapter: Option<String>,
        devices_opened: usize,
        gemm_kernel: Option<String>,
        gemm_kernel_small: Option<String>,
        fused_attention: Option<bool>,
        subgroup_reductions: Option<bool>,
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
    fn parse(options: JsValue, takes: &[&str], depth: usize) -> Result<CallOptions, WebError> {
        let value = if options.is_undefined() || options.is_null() {
            serde_json::Value::Null
        } else {
            serde_wasm_bindgen::from_value::<serde_json::Value>(options)
                .map_err(|e| WebError::new(ErrorCode::BadOptions, format!("options: {e}")))?
        };
        CallOptions::parse(&value, takes, depth).map_err(js_error)
    }
}

/// The median of `v`.
fn median(v: &[f64]) -> f64 {
    crate::eval::stats::median(v)
}
