//! The browser entry points (wasm-bindgen): a thin JavaScript face on [`crate::Session`].
//!
//! Everything below the calls here (decoding, preprocessing, the kernels, pruning, the scheduler)
//! is the same code the native binary runs. Every call returns a promise and never blocks the page:
//! the GPU work is awaited on the browser's event loop.
//!
//! ```js
//! import init, { Session } from "./pkg/zeroprune.js";
//! await init();
//! const session = await Session.create(modelBytes, configJson);
//! const r = await session.classify(imageBytes, { policy: "zero-tprune", flops: 0.65, compareDense: true });
//! r.top[0].label; r.latencyMs; r.steps[0].kept;
//! ```

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::error::Error;
use crate::gpu::{AdapterChoice, GpuContext};
use crate::model::weights::ConfigFiles;
use crate::model::Precision;
use crate::preprocess::{decode_image, preprocess, preprocess_rgba, to_rgb};
use crate::prune::{Policy, PruneRequest, Pruning};
use crate::session::top_k;
use crate::{labels, ModelWeights, ViTConfig};

mod text;

pub use text::TextModel;

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

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

/// A model file must fit the browser's limit, checked before it is parsed.
fn check_model_bytes(len: usize) -> Result<(), JsError> {
    let max = crate::limits::MAX_BROWSER_MODEL_BYTES;
    if len as u64 > max {
        return Err(JsError::new(&format!(
            "model.safetensors: {len} bytes is over the browser's limit of {max} bytes \
             (a wasm32 page has 4 GiB of memory); use the native binary for this model"
        )));
    }
    Ok(())
}

/// Milliseconds on the clock the kernel tuning uses (the page's `performance.now()`).
fn now_ms() -> f64 {
    crate::gpu::program::now_s() * 1e3
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&format!("could not build the result object: {e}")))
}

/// Options of `classify` and `bench`: the pruning request plus a few run settings.
struct RunOptions {
    prune: PruneRequest,
    top: usize,
    compare_dense: bool,
    runs: usize,
    batch: usize,
    /// The image's name in error messages (e.g. its file name).
    name: String,
}

fn run_options(options: JsValue) -> Result<RunOptions, JsError> {
    let mut map = if options.is_undefined() || options.is_null() {
        serde_json::Map::new()
    } else {
        match serde_wasm_bindgen::from_value::<serde_json::Value>(options) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => {
                return Err(JsError::new(
                    "options must be an object, e.g. {policy: \"zero-tprune\", flops: 0.65}",
                ))
            }
            Err(e) => return Err(JsError::new(&format!("options: {e}"))),
        }
    };
    // JavaScript leaves unset fields undefined or null: both mean "default".
    map.retain(|_, v| !v.is_null());
    let mut count = |key: &str, default: usize, max: usize| -> Result<usize, JsError> {
        match map.remove(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|&n| n >= 1 && n as usize <= max)
                .map(|n| n as usize)
                .ok_or_else(|| {
                    JsError::new(&format!(
                        "options.{key} must be an integer from 1 to {max}, got {v}"
                    ))
                }),
        }
    };
    let top = count("top", 5, 1000)?;
    let runs = count("runs", 1, 1000)?;
    let batch = count("batch", 1, 1024)?;
    let compare_dense = match map.remove("compareDense") {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(v) => {
            return Err(JsError::new(&format!(
                "options.compareDense must be true or false, got {v}"
            )))
        }
    };
    let name = match map.remove("name") {
        None => "input".to_string(),
        Some(serde_json::Value::String(s)) => s,
        Some(v) => {
            return Err(JsError::new(&format!(
                "options.name must be a string, got {v}"
            )))
        }
    };
    // A schedule file may come as its text or as the parsed object.
    if let Some(serde_json::Value::String(text)) = map.get("schedule") {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| JsError::new(&format!("options.schedule is not JSON: {e}")))?;
        map.insert("schedule".into(), value);
    }
    // Sliders give numbers; the textual fields of the request are strings.
    if let Some(v) = map.get_mut("at") {
        if let Some(list) = v.as_array() {
            *v = serde_json::Value::String(
                list.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
    }
    let prune: PruneRequest = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| JsError::new(&format!("options: {e}")))?;
    Ok(RunOptions {
        prune,
        top,
        compare_dense,
        runs,
        batch,
        name,
    })
}

/// The image argument: encoded bytes (`Uint8Array` / `ArrayBuffer` of a JPEG, PNG, WebP, BMP or
/// GIF) or decoded pixels (`ImageData`). Returns the preprocessed `[3, H, W]` tensor.
fn image_input(image: &JsValue, name: &str, c: &ViTConfig) -> Result<Vec<f32>, JsError> {
    if let Some(data) = image.dyn_ref::<web_sys::ImageData>() {
        let rgba = data.data();
        return preprocess_rgba(data.width(), data.height(), &rgba, &c.preprocess)
            .map_err(js_error);
    }
    let array = if let Some(a) = image.dyn_ref::<js_sys::Uint8Array>() {
        a.clone()
    } else if image.is_instance_of::<js_sys::ArrayBuffer>() {
        js_sys::Uint8Array::new(image)
    } else {
        return Err(JsError::new(
            "image must be a Uint8Array or ArrayBuffer holding an encoded image, or an ImageData",
        ));
    };
    // Checked before the bytes are copied into the wasm memory.
    let max = crate::limits::MAX_IMAGE_FILE_BYTES;
    if array.length() as u64 > max {
        return Err(JsError::new(&format!(
            "{name}: {} bytes is over the limit of {max} bytes for an image file",
            array.length()
        )));
    }
    let bytes = array.to_vec();
    let rgb = decode_image(&bytes, name).map_err(js_error)?;
    preprocess(&rgb, &c.preprocess).map_err(js_error)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClassScore {
    index: usize,
    label: String,
    prob: f32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepKept {
    block: usize,
    /// Patch indices (row-major over the grid) that survive the step.
    kept: Vec<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunResult {
    policy: String,
    schedule: String,
    top: Vec<ClassScore>,
    /// Median wall time of the forward pass (upload, GPU work, readback), in ms.
    latency_ms: f64,
    latencies_ms: Vec<f64>,
    gflops: f64,
    steps: Vec<StepKept>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClassifyResult {
    #[serde(flatten)]
    pruned: RunResult,
    /// The dense run of the same image when `compareDense` is set.
    dense: Option<RunResult>,
    /// Pruned FLOPs over dense FLOPs for this image.
    flops_ratio: f64,
    /// Dense latency over pruned latency, both measured in this call (with `compareDense`).
    speedup: Option<f64>,
    preprocess_ms: f64,
    /// Patch grid `[rows, cols]` the kept indices refer to.
    grid: [usize; 2],
    /// The image the model saw (after resize and crop), RGBA, `imageSize` square.
    input_rgba: Vec<u8>,
    image_size: [usize; 2],
}

struct Inner {
    session: crate::Session,
    classes: Vec<String>,
    /// Schedules already run once (pipelines compiled and warmed), by input length.
    warm: HashSet<(usize, Pruning)>,
}

/// A model on the page's GPU.
#[wasm_bindgen]
pub struct Session {
    /// Taken out while a call runs, so overlapping calls get a clear error instead of a panic.
    inner: Rc<RefCell<Option<Inner>>>,
    info: JsValue,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Inner {
    /// Run `input` (a batch) `runs` times under `pruning`, after one untimed run the first time this
    /// schedule is seen; returns the last outputs and every latency.
    async fn timed(
        &mut self,
        pruning: &Pruning,
        input: &[f32],
        runs: usize,
    ) -> Result<(Vec<crate::ImageOutput>, Vec<f64>), JsError> {
        let key = (input.len(), pruning.clone());
        if !self.warm.contains(&key) {
            self.session
                .run_async(input, pruning)
                .await
                .map_err(js_error)?;
            self.warm.insert(key);
        }
        let mut times = Vec::with_capacity(runs);
        let mut out = Vec::new();
        for _ in 0..runs {
            let t = now_ms();
            out = self
                .session
                .run_async(input, pruning)
                .await
                .map_err(js_error)?
                .images;
            times.push(now_ms() - t);
        }
        Ok((out, times))
    }

    async fn classify_one(
        &mut self,
        pruning: &Pruning,
        input: &[f32],
        o: &RunOptions,
    ) -> Result<RunResult, JsError> {
        let (out, mut times) = self.timed(pruning, input, o.runs).await?;
        let image = &out[0];
        let top = top_k(&image.logits, o.top)
            .top
            .into_iter()
            .map(|(index, prob)| ClassScore {
                index,
                label: self.classes.get(index).cloned().unwrap_or_default(),
                prob,
            })
            .collect();
        let steps = pruning
            .steps
            .iter()
            .zip(&image.kept)
            .map(|(s, k)| StepKept {
                block: s.block,
                kept: k.clone(),
            })
            .collect();
        let gflops = image.flops / 1e9;
        let latencies_ms = times.clone();
        Ok(RunResult {
            policy: pruning.policy.name().to_string(),
            schedule: pruning.describe(),
            top,
            latency_ms: median(&mut times),
            latencies_ms,
            gflops,
            steps,
        })
    }
}

#[wasm_bindgen]
impl Session {
    /// `Session.create(modelBytes, configJson?, precision?)`: open the page's WebGPU adapter, parse
    /// the `model.safetensors` bytes (timm or Hugging Face layout) with the optional `config.json`
    /// text, measure the kernels, and upload the weights as `precision` says (`"f32"`, the
    /// default, `"f16"` or `"auto"`). Resolves to a Session.
    pub async fn create(
        model_bytes: Vec<u8>,
        config_json: Option<String>,
        precision: Option<String>,
    ) -> Result<Session, JsError> {
        check_model_bytes(model_bytes.len())?;
        let precision: Precision = match precision.as_deref() {
            None => Precision::default(),
            Some(p) => p.parse().map_err(js_error)?,
        };
        let weights = ModelWeights::from_bytes(
            "model.safetensors",
            &model_bytes,
            ConfigFiles {
                config: config_json.as_deref(),
                preprocessor: None,
            },
        )
        .map_err(js_error)?;
        drop(model_bytes);
        let choice = AdapterChoice {
            backends: Some(wgpu::Backends::BROWSER_WEBGPU),
            name: None,
        };
        let gpu = GpuContext::new(&choice).await.map_err(js_error)?;
        // Picks the GEMM tile, the attention path and f16 or f32 by measuring them on this adapter.
        let session = crate::Session::create(&gpu, &weights, precision)
            .await
            .map_err(js_error)?;
        let choice = session.kernel_choice();
        let c = &weights.config;
        // The page lists the policies (and their default blocks) from the library's registry.
        let policies: Vec<_> = Policy::all().iter().map(|p| p.info(c.depth)).collect();
        let info = SessionInfo {
            adapter: gpu.describe(),
            max_storage_buffer_binding_size: gpu.max_binding_bytes(),
            max_batch: session.max_batch(),
            parameters: weights.parameter_count(),
            image_size: [c.image_size.0, c.image_size.1],
            patch_size: c.patch_size,
            grid: [c.grid().0, c.grid().1],
            depth: c.depth,
            embed_dim: c.embed_dim,
            heads: c.num_heads,
            classes: c.num_classes,
            distilled: c.distilled,
            dense_gflops: Pruning::dense().flops(c) / 1e9,
            gemm_kernel: choice.gemm.name(),
            gemm_kernel_small: choice.gemm_small.name(),
            fused_attention: choice.fused_attention,
            subgroup_reductions: session.subgroup_reductions(),
            storage: session.storage(),
            policies,
            recommended: Policy::recommended_levels()
                .iter()
                .map(|&(flops, p)| Recommended {
                    flops,
                    policy: p.name(),
                })
                .collect(),
        };
        if session.max_batch() == 0 {
            return Err(JsError::new(&format!(
                "this adapter's largest storage buffer ({} bytes) is too small for this model's activations",
                gpu.max_binding_bytes()
            )));
        }
        Ok(Session {
            inner: Rc::new(RefCell::new(Some(Inner {
                classes: labels::model_class_names(c),
                session,
                warm: HashSet::new(),
            }))),
            info: to_js(&info)?,
        })
    }

    /// Adapter and model facts: `{adapter, maxBatch, parameters, imageSize, patchSize, grid, depth,
    /// embedDim, heads, classes, distilled, denseGflops, gemmKernel, gemmKernelSmall, fusedAttention, policies,
    /// recommended}`; `policies` lists every policy as `{name, help, reads, merges, keep_rule,
    /// default_blocks, default_shape, options}` (default blocks for this model's depth), and
    /// `recommended` lists `{flops, policy}`: the policy a FLOPs target without one runs, by level.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// `session.classify(image, options?)`: `image` is a `Uint8Array`/`ArrayBuffer` of an encoded
    /// image or an `ImageData`. Options: the pruning request (`policy`, `flops`, `keep`, `tokens`,
    /// `threshold`, `at`, `sim`, `heads`, `iters`, `seed`, `protect`, and `schedule`, a schedule
    /// file from `zeroprune tune` as its text or object, as on the command line), `top` (5),
    /// `runs` (timed runs, median reported; 1), `compareDense` (also run the dense model) and `name`
    /// (the image's name in error messages).
    /// Resolves to `{policy, schedule, top: [{index, label, prob}], latencyMs, latenciesMs, gflops,
    /// steps: [{block, kept}], dense?, flopsRatio, speedup?, preprocessMs, grid, inputRgba, imageSize}`.
    pub fn classify(&self, image: JsValue, options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut state = take(&inner)?;
            let result = classify(&mut state, &image, options).await;
            inner.borrow_mut().replace(state);
            result.map_err(JsValue::from)
        })
    }

    /// `session.simulateDeviceLoss()`: destroy this session's GPU device, as a driver reset or a
    /// removed GPU would. Every later call rejects with "GPU device lost"; create a new Session to go
    /// on. For testing how a page handles the loss.
    #[wasm_bindgen(js_name = simulateDeviceLoss)]
    pub fn simulate_device_loss(&self) -> Result<(), JsError> {
        let inner = self.inner.borrow();
        let state = inner.as_ref().ok_or_else(|| {
            JsError::new("the session is busy with another call: await it before starting the next")
        })?;
        state.session.gpu().device.destroy();
        Ok(())
    }

    /// `session.bench(options?)`: the forward pass alone on a synthetic batch, dense and pruned,
    /// `runs` times each after a warm-up. Options as `classify`, plus `batch` (1). Resolves to
    /// `{batch, runs, dense: {medianMs, minMs, maxMs}, pruned?: {...}, speedup?, flopsRatio?}`.
    pub fn bench(&self, options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut state = take(&inner)?;
            let result = bench(&mut state, options).await;
            inner.borrow_mut().replace(state);
            result.map_err(JsValue::from)
        })
    }
}

fn take(inner: &Rc<RefCell<Option<Inner>>>) -> Result<Inner, JsValue> {
    inner.borrow_mut().take().ok_or_else(|| {
        JsError::new("the session is busy with another call: await it before starting the next")
            .into()
    })
}

async fn classify(
    state: &mut Inner,
    image: &JsValue,
    options: JsValue,
) -> Result<JsValue, JsError> {
    let o = run_options(options)?;
    if o.batch != 1 {
        return Err(JsError::new(
            "options.batch is for bench; classify takes one image",
        ));
    }
    let c = state.session.config().clone();
    let pruning = o.prune.resolve(&c).map_err(js_error)?;
    let t = now_ms();
    let input = image_input(image, &o.name, &c)?;
    let preprocess_ms = now_ms() - t;

    let dense = if o.compare_dense && !pruning.is_dense() {
        Some(state.classify_one(&Pruning::dense(), &input, &o).await?)
    } else {
        None
    };
    let pruned = state.classify_one(&pruning, &input, &o).await?;
    let dense_gflops = Pruning::dense().flops(&c) / 1e9;
    let rgba: Vec<u8> = to_rgb(&input, &c.preprocess)
        .pixels()
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    let result = ClassifyResult {
        flops_ratio: pruned.gflops / dense_gflops,
        speedup: dense.as_ref().map(|d| d.latency_ms / pruned.latency_ms),
        dense,
        pruned,
        preprocess_ms,
        grid: [c.grid().0, c.grid().1],
        input_rgba: rgba,
        image_size: [c.image_size.0, c.image_size.1],
    };
    to_js(&result)
}

async fn bench(state: &mut Inner, options: JsValue) -> Result<JsValue, JsError> {
    let o = run_options(options)?;
    let c = state.session.config().clone();
    let pruning = o.prune.resolve(&c).map_err(js_error)?;
    if o.batch > state.session.max_batch() {
        return Err(JsError::new(&format!(
            "options.batch {} is over this adapter's limit for this model ({})",
            o.batch,
            state.session.max_batch()
        )));
    }
    let input = vec![0.1f32; o.batch * state.session.image_len()];
    let dense = Timings::of(state.timed(&Pruning::dense(), &input, o.runs).await?.1);
    let mut out = BenchResult {
        batch: o.batch,
        runs: o.runs,
        adapter: state.session.gpu().describe(),
        dense,
        policy: None,
        schedule: None,
        pruned: None,
        speedup: None,
        flops_ratio: None,
    };
    if !pruning.is_dense() {
        let pruned = Timings::of(state.timed(&pruning, &input, o.runs).await?.1);
        out.policy = Some(pruning.policy.name().into());
        out.schedule = Some(pruning.describe());
        out.speedup = Some(out.dense.median_ms / pruned.median_ms);
        out.pruned = Some(pruned);
        out.flops_ratio = Some(pruning.flops(&c) / Pruning::dense().flops(&c));
    }
    to_js(&out)
}

/// `session.info`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionInfo {
    adapter: String,
    max_storage_buffer_binding_size: u64,
    max_batch: usize,
    parameters: usize,
    image_size: [usize; 2],
    patch_size: usize,
    grid: [usize; 2],
    depth: usize,
    embed_dim: usize,
    heads: usize,
    classes: usize,
    distilled: bool,
    dense_gflops: f64,
    gemm_kernel: String,
    gemm_kernel_small: String,
    fused_attention: bool,
    subgroup_reductions: bool,
    /// What the weights are stored as: "f32" or "f16".
    storage: crate::gpu::kernel::Elem,
    policies: Vec<crate::prune::PolicyInfo>,
    /// The policy a FLOPs target without one runs, by level (`Policy::recommended`): the page's
    /// first choice.
    recommended: Vec<Recommended>,
}

/// The recommended policy at one FLOPs level.
#[derive(Serialize)]
struct Recommended {
    flops: f64,
    policy: &'static str,
}

/// Median and spread of one set of timings.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Timings {
    fn of(mut t: Vec<f64>) -> Self {
        let median_ms = median(&mut t);
        Timings {
            median_ms,
            min_ms: t[0],
            max_ms: t[t.len() - 1],
        }
    }
}

/// What `session.bench` resolves to.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BenchResult {
    batch: usize,
    runs: usize,
    adapter: String,
    dense: Timings,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pruned: Option<Timings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flops_ratio: Option<f64>,
}
