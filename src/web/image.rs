//! The browser's image models: `Session.create(modelBytes, configJson?, precision?)`,
//! `session.classify(image, options?)` and `session.bench(options?)`, on the page's shared GPU.

use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use super::{
    check_model_bytes, js_error, median, now_ms, runtime, to_js, Guarded, Options, WebError,
};
use crate::error::ErrorCode;
use crate::model::{ConfigFiles, ImageOutput, Precision};
use crate::options::{self, CallOptions};
use crate::preprocess::{decode_image, preprocess, preprocess_rgba, to_rgb};
use crate::prune::Pruning;
use crate::session::{top_classes, ClassScore, Run};
use crate::{labels, ModelWeights, ViTConfig};

/// The image argument: encoded bytes (`Uint8Array` / `ArrayBuffer` of a JPEG, PNG, WebP, BMP or
/// GIF) or decoded pixels (`ImageData`). Returns the preprocessed `[3, H, W]` tensor.
fn image_input(image: &JsValue, name: &str, c: &ViTConfig) -> Result<Vec<f32>, WebError> {
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
        return Err(WebError::new(
            ErrorCode::BadImage,
            "image must be a Uint8Array or ArrayBuffer holding an encoded image, or an ImageData",
        ));
    };
    // Checked before the bytes are copied into the wasm memory.
    let max = crate::limits::MAX_IMAGE_FILE_BYTES;
    if array.length() as u64 > max {
        return Err(WebError::new(
            ErrorCode::TooLarge,
            format!(
                "{name}: {} bytes is over the limit of {max} bytes for an image file",
                array.length()
            ),
        ));
    }
    let bytes = array.to_vec();
    let rgb = decode_image(&bytes, name).map_err(js_error)?;
    preprocess(&rgb, &c.preprocess).map_err(js_error)
}

#[derive(Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
struct StepKept {
    block: usize,
    /// Patch indices (row-major over the grid) that survive the step.
    kept: Vec<u32>,
}

#[derive(Serialize, tsify::Tsify)]
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

/// One image of a batch: its classes, FLOPs and the tokens each step kept.
#[derive(Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
struct BatchItem {
    top: Vec<ClassScore>,
    gflops: f64,
    steps: Vec<StepKept>,
}

#[derive(Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
struct BatchResult {
    policy: String,
    schedule: String,
    /// One per image, in order.
    results: Vec<BatchItem>,
    /// Images per GPU pass.
    batch: usize,
    /// Wall time of the forward passes (uploads, GPU work, readbacks), in ms, decoding excluded.
    latency_ms: f64,
    images_per_s: f64,
    preprocess_ms: f64,
}

#[derive(Serialize, tsify::Tsify)]
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
    warm: std::collections::HashSet<(usize, Pruning)>,
}

/// An image model on the page's GPU.
#[wasm_bindgen]
pub struct Session {
    state: Guarded<Inner>,
    info: JsValue,
}

impl Inner {
    /// Run `input` (a batch) `runs` times under `pruning`, after one untimed run the first time this
    /// schedule is seen; returns the last outputs and every latency.
    async fn timed(
        &mut self,
        pruning: &Pruning,
        input: &[f32],
        runs: usize,
    ) -> Result<(Vec<ImageOutput>, Vec<f64>), WebError> {
        let key = (input.len(), pruning.clone());
        if !self.warm.contains(&key) {
            self.session
                .run_async(input, Run::new(pruning))
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
                .run_async(input, Run::new(pruning))
                .await
                .map_err(js_error)?
                .items;
            times.push(now_ms() - t);
        }
        Ok((out, times))
    }

    async fn classify_one(
        &mut self,
        pruning: &Pruning,
        input: &[f32],
        o: &CallOptions,
    ) -> Result<RunResult, WebError> {
        let (out, times) = self.timed(pruning, input, o.runs).await?;
        let image = &out[0];
        let steps = steps_kept(pruning, image);
        Ok(RunResult {
            policy: pruning.policy.name().to_string(),
            schedule: pruning.describe(),
            top: top_classes(&image.logits, o.top, &self.classes),
            latency_ms: median(&times),
            latencies_ms: times,
            gflops: image.flops / 1e9,
            steps,
        })
    }

    /// The schedule of `o` for this model: a per-image policy's FLOPs target needs calibration,
    /// which `evaluate` (on the images it scores) and `bench` (on no image) do not do.
    fn pruning(&self, o: &CallOptions) -> Result<Pruning, WebError> {
        let g = self.session.config().geometry();
        o.dropped(false).map_err(js_error)?;
        o.pruner(&g).and_then(|p| p.schedule(&g)).map_err(js_error)
    }

    /// The schedule of `o` for the call's `images`: a per-image policy's FLOPs target is their
    /// mean (calibrated on the first `CALIBRATION_IMAGES`), as `zeroprune classify` means it.
    async fn pruning_for(
        &mut self,
        o: &CallOptions,
        images: &[&[f32]],
    ) -> Result<Pruning, WebError> {
        let g = self.session.config().geometry();
        o.dropped(false).map_err(js_error)?;
        let mut pruner = o.pruner(&g).map_err(js_error)?;
        if pruner.needs_calibration().map_err(js_error)? {
            let input: Vec<f32> = images
                .iter()
                .take(crate::session::CALIBRATION_IMAGES)
                .flat_map(|i| i.iter().copied())
                .collect();
            let batch = self.session.max_batch().clamp(1, 8);
            self.session
                .calibrate_async(&input, &mut pruner, batch, |_| {})
                .await
                .map_err(js_error)?;
        }
        pruner.schedule(&g).map_err(js_error)
    }
}

#[wasm_bindgen]
impl Session {
    /// `Session.create(modelBytes, configJson?, precision?)`: parse the `model.safetensors` bytes
    /// (timm or Hugging Face layout) with the optional `config.json` text, open the page's WebGPU
    /// device (or share the one another model opened), measure the kernels once per page, and
    /// upload the weights as `precision` says (`"f32"`, the default, `"f16"` or `"auto"`).
    /// Resolves to a Session.
    pub async fn create(
        #[wasm_bindgen(js_name = modelBytes)] model_bytes: Vec<u8>,
        #[wasm_bindgen(js_name = configJson, unchecked_optional_param_type = "string")]
        config_json: Option<String>,
        #[wasm_bindgen(unchecked_optional_param_type = "Precision")] precision: Option<String>,
    ) -> Result<Session, WebError> {
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
        let kernels = runtime().await?;
        let session = crate::Session::create_with(&kernels, &weights, precision)
            .await
            .map_err(js_error)?;
        if session.max_batch() == 0 {
            return Err(WebError::new(
                ErrorCode::AdapterLimit,
                format!(
                    "this adapter's largest storage buffer ({} bytes) is too small for this model's activations",
                    kernels.gpu().max_binding_bytes()
                ),
            ));
        }
        let choice = session.kernel_choice();
        let c = &weights.config;
        let list = super::PolicyList::of(c.depth, crate::model::Modality::Image);
        let info = SessionInfo {
            adapter: kernels.gpu().describe(),
            max_storage_buffer_binding_size: kernels.gpu().max_binding_bytes(),
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
            dense_gflops: c.geometry().dense_flops() / 1e9,
            gemm_kernel: choice.gemm.name(),
            gemm_kernel_small: choice.gemm_small.name(),
            fused_attention: choice.fused_attention,
            subgroup_reductions: session.subgroup_reductions(),
            storage: session.storage(),
            policies: list.policies,
            recommended: list.recommended,
        };
        Ok(Session {
            state: Guarded::new(Inner {
                classes: labels::model_class_names(c),
                session,
                warm: Default::default(),
            }),
            info: to_js(&info)?,
        })
    }

    /// Adapter and model facts: `{adapter, maxBatch, parameters, imageSize, patchSize, grid, depth,
    /// embedDim, heads, classes, distilled, denseGflops, gemmKernel, gemmKernelSmall, fusedAttention, policies,
    /// recommended}`; `policies` lists every policy as `{name, help, reads, merges, keep_rule,
    /// default_blocks, default_shape, options}` (default blocks for this model's depth), and
    /// `recommended` lists `{flops, policy}`: the policy a FLOPs target without one runs, by level.
    #[wasm_bindgen(getter, unchecked_return_type = "SessionInfo")]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// `session.classify(image, options?)`: `image` is a `Uint8Array`/`ArrayBuffer` of an encoded
    /// image or an `ImageData`. Options: the pruning request (`policy`, `flops`, `keep`, `tokens`,
    /// `threshold`, `thresholds`, `at`, `sim`, `heads`, `iters`, `seed`, `protect`, and `schedule`,
    /// a schedule file from `zeroprune tune` as its text or object, as on the command line), `top`
    /// (5), `runs` (timed runs, median reported; 1), `compareDense` (also run the dense model) and
    /// `name` (the image's name in error messages).
    /// Resolves to `{policy, schedule, top: [{class, name, probability}], latencyMs, latenciesMs,
    /// gflops, steps: [{block, kept}], dense?, flopsRatio, speedup?, preprocessMs, grid, inputRgba,
    /// imageSize}`.
    #[wasm_bindgen(unchecked_return_type = "Promise<ClassifyResult>")]
    pub fn classify(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageInput")] image: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ClassifyOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        self.state.call(move |mut state| async move {
            let result = classify(&mut state, &image, options).await;
            (state, result)
        })
    }

    /// `session.classifyBatch(images, options?)`: a list of images (each what `classify` takes)
    /// classified in GPU batches of `batch` (8, at most what the adapter holds for this model).
    /// Options: the pruning request, `top` (5), `batch`. Resolves to `{policy, schedule, results:
    /// [{top, gflops, steps}], batch, latencyMs, imagesPerS, preprocessMs}`, one result per image
    /// in order.
    #[wasm_bindgen(js_name = classifyBatch, unchecked_return_type = "Promise<BatchResult>")]
    pub fn classify_batch(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageInput[]")] images: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ClassifyBatchOptions")] options: Option<
            JsValue,
        >,
    ) -> js_sys::Promise {
        self.state.call(move |mut state| async move {
            let result = classify_batch(&mut state, images, options).await;
            (state, result)
        })
    }

    /// `session.embed(images, options?)`: each image's embedding (the final-normed class token,
    /// projected where the model has a projection: what `zeroprune embed` gives), in GPU batches
    /// of `batch` (8); with a pruning request, also each image's cosine to its dense embedding.
    /// Resolves to `{embeddings, dim, policy, schedule, gflops, cosineToDense, latencyMs}`.
    #[wasm_bindgen(unchecked_return_type = "Promise<ImageEmbedResult>")]
    pub fn embed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageInput[]")] images: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ImageEmbedOptions")] options: Option<
            JsValue,
        >,
    ) -> js_sys::Promise {
        self.state.call(move |mut state| async move {
            let result = embed(&mut state, images, options).await;
            (state, result)
        })
    }

    /// `session.simulateDeviceLoss()`: destroy the page's GPU device, as a driver reset or a
    /// removed GPU would. Every later call of every model on it rejects with "GPU device lost";
    /// create the models again to go on (on a new device). For testing how a page handles it.
    #[wasm_bindgen(js_name = simulateDeviceLoss)]
    pub fn simulate_device_loss(&self) -> Result<(), WebError> {
        self.state
            .with(|state| state.session.gpu().device.destroy())
    }

    /// `session.evaluate(images, labels?, options?)`: the images (an array of what `classify`
    /// takes) run dense and with the options' pruning, batch by batch (`batch`, 8), through the
    /// driver `zeroprune eval` runs. Resolves to the same figures, by the same names:
    /// `{images, top1?, top1_se?, top5?, dense_top1?, top1_delta?, top1_delta_se?, agreement,
    /// agreement_se, mean_cosine, mean_cosine_se, gflops_per_image, dense_gflops_per_image,
    /// flops_ratio, flops_ratio_min, flops_ratio_max, forward_images_per_s,
    /// dense_forward_images_per_s, speedup}`; the label figures where `labels` (class indices, one
    /// per image) are given.
    #[wasm_bindgen(unchecked_return_type = "Promise<EvaluateResult>")]
    pub fn evaluate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ImageInput[]")] images: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "number[]")] labels: Option<JsValue>,
        #[wasm_bindgen(unchecked_optional_param_type = "EvaluateOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        self.state.call(move |mut state| async move {
            let result = evaluate(&mut state, images, labels, options).await;
            (state, result)
        })
    }

    /// `session.bench(options?)`: the forward pass alone on a synthetic batch, dense and pruned,
    /// `runs` times each after a warm-up. Options as `classify`, plus `batch` (1). Resolves to
    /// `{batch, runs, dense: {medianMs, minMs, maxMs}, pruned?: {...}, speedup?, flopsRatio?}`;
    /// `speedup` is the median of the dense/pruned ratios of runs played back to back.
    #[wasm_bindgen(unchecked_return_type = "Promise<BenchResult>")]
    pub fn bench(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "BenchOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        self.state.call(move |mut state| async move {
            let result = bench(&mut state, options).await;
            (state, result)
        })
    }
}

async fn classify(
    state: &mut Inner,
    image: &JsValue,
    options: Option<JsValue>,
) -> Result<JsValue, WebError> {
    let c = state.session.config().clone();
    c.check_classifies("model").map_err(js_error)?;
    let o = Options::parse(options, &options::CLASSIFY, c.depth)?;
    let t = now_ms();
    let input = image_input(image, &o.name, &c)?;
    let preprocess_ms = now_ms() - t;
    let pruning = state.pruning_for(&o, &[&input]).await?;

    let dense = if o.compare_dense && !pruning.is_dense() {
        Some(state.classify_one(&Pruning::dense(), &input, &o).await?)
    } else {
        None
    };
    let pruned = state.classify_one(&pruning, &input, &o).await?;
    let dense_gflops = c.geometry().dense_flops() / 1e9;
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

/// Per pruning step of `pruning`, the tokens `image` kept there.
fn steps_kept(pruning: &Pruning, image: &ImageOutput) -> Vec<StepKept> {
    pruning
        .steps
        .iter()
        .zip(&image.kept)
        .map(|(s, k)| StepKept {
            block: s.block,
            kept: k.clone(),
        })
        .collect()
}

/// The images of a JavaScript array, decoded and preprocessed, named `image 0`, `image 1`, ...
fn image_list(images: &JsValue, c: &ViTConfig) -> Result<Vec<Vec<f32>>, WebError> {
    if !js_sys::Array::is_array(images) {
        return Err(WebError::new(
            ErrorCode::BadOptions,
            "images must be a non-empty array of images",
        ));
    }
    let list: Vec<JsValue> = js_sys::Array::from(images).iter().collect();
    if list.is_empty() {
        return Err(WebError::new(
            ErrorCode::BadOptions,
            "images must be a non-empty array of images",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, image)| image_input(image, &format!("image {i}"), c))
        .collect()
}

async fn classify_batch(
    state: &mut Inner,
    images: JsValue,
    options: Option<JsValue>,
) -> Result<JsValue, WebError> {
    let c = state.session.config().clone();
    c.check_classifies("model").map_err(js_error)?;
    let o = Options::parse(options, &options::CLASSIFY_BATCH, c.depth)?;
    let batch = batch_size(o.batch, 8, &state.session)?;
    let t = now_ms();
    let inputs = image_list(&images, &c)?;
    let preprocess_ms = now_ms() - t;
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let pruning = state.pruning_for(&o, &refs).await?;
    let t = now_ms();
    let mut results = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(batch) {
        let input: Vec<f32> = chunk.concat();
        let out = state
            .session
            .run_async(&input, Run::new(&pruning))
            .await
            .map_err(js_error)?;
        results.extend(out.items.iter().map(|image| BatchItem {
            top: top_classes(&image.logits, o.top, &state.classes),
            gflops: image.flops / 1e9,
            steps: steps_kept(&pruning, image),
        }));
    }
    let latency_ms = now_ms() - t;
    to_js(&BatchResult {
        policy: pruning.policy.name().to_string(),
        schedule: pruning.describe(),
        images_per_s: results.len() as f64 / (latency_ms / 1e3).max(1e-9),
        results,
        batch,
        latency_ms,
        preprocess_ms,
    })
}

/// What `session.embed` resolves to.
#[derive(Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
struct ImageEmbedResult {
    /// One per image, in order.
    embeddings: Vec<Vec<f32>>,
    dim: usize,
    policy: String,
    schedule: String,
    gflops: Vec<f64>,
    /// With a pruning request: each image's cosine to its dense embedding (null when dense).
    cosine_to_dense: Option<Vec<f64>>,
    /// Wall time of the forward passes (uploads, GPU work, readbacks), in ms.
    latency_ms: f64,
}

/// Every image's output under `pruning`, in passes of `batch`.
async fn run_batches(
    state: &mut Inner,
    inputs: &[Vec<f32>],
    pruning: &Pruning,
    batch: usize,
) -> Result<Vec<ImageOutput>, WebError> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(batch) {
        let input: Vec<f32> = chunk.concat();
        let items = state
            .session
            .run_async(&input, Run::new(pruning))
            .await
            .map_err(js_error)?
            .items;
        out.extend(items);
    }
    Ok(out)
}

async fn embed(
    state: &mut Inner,
    images: JsValue,
    options: Option<JsValue>,
) -> Result<JsValue, WebError> {
    let c = state.session.config().clone();
    let o = Options::parse(options, &options::EMBED_IMAGES, c.depth)?;
    let batch = batch_size(o.batch, 8, &state.session)?;
    let inputs = image_list(&images, &c)?;
    let refs: Vec<&[f32]> = inputs.iter().map(Vec::as_slice).collect();
    let pruning = state.pruning_for(&o, &refs).await?;
    let t = now_ms();
    let out = run_batches(state, &inputs, &pruning, batch).await?;
    let latency_ms = now_ms() - t;
    let cosine_to_dense = if pruning.is_dense() {
        None
    } else {
        let dense = run_batches(state, &inputs, &Pruning::dense(), batch).await?;
        Some(
            out.iter()
                .zip(&dense)
                .map(|(p, d)| crate::eval::stats::cosine(&p.embedding, &d.embedding))
                .collect(),
        )
    };
    to_js(&ImageEmbedResult {
        dim: c.embedding_dim(),
        policy: pruning.policy.name().to_string(),
        schedule: pruning.describe(),
        gflops: out.iter().map(|o| o.flops / 1e9).collect(),
        embeddings: out.into_iter().map(|o| o.embedding).collect(),
        cosine_to_dense,
        latency_ms,
    })
}

async fn evaluate(
    state: &mut Inner,
    images: JsValue,
    labels: Option<JsValue>,
    options: Option<JsValue>,
) -> Result<JsValue, WebError> {
    use crate::eval::driver::{run_settings, Setting};
    use crate::eval::report::{with_unit, Quality, Unit};
    use crate::eval::task::Task;
    let c = state.session.config().clone();
    c.check_classifies("model").map_err(js_error)?;
    let o = Options::parse(options, &options::EVALUATE, c.depth)?;
    let pruning = state.pruning(&o)?;
    let batch = batch_size(o.batch, 8, &state.session)?;
    let list: Vec<JsValue> = js_sys::Array::from(&images).iter().collect();
    if !js_sys::Array::is_array(&images) || list.is_empty() {
        return Err(WebError::new(
            ErrorCode::BadOptions,
            "images must be a non-empty array of images",
        ));
    }
    let labels: Option<Vec<usize>> = match labels.filter(|l| !l.is_undefined() && !l.is_null()) {
        None => None,
        Some(labels) => {
            let l: Vec<usize> = serde_wasm_bindgen::from_value(labels).map_err(|e| {
                WebError::new(
                    ErrorCode::BadOptions,
                    format!("labels must be class indices: {e}"),
                )
            })?;
            if l.len() != list.len() {
                return Err(WebError::new(
                    ErrorCode::BadOptions,
                    format!("{} labels for {} images", l.len(), list.len()),
                ));
            }
            if let Some(bad) = l.iter().find(|&&x| x >= c.num_classes) {
                return Err(WebError::new(
                    ErrorCode::BadOptions,
                    format!(
                        "label {bad} is not one of the model's {} classes",
                        c.num_classes
                    ),
                ));
            }
            Some(l)
        }
    };
    let settings = [Setting::dense(), Setting::fixed(pruning)];
    let batches: Vec<Vec<usize>> = (0..list.len())
        .collect::<Vec<_>>()
        .chunks(batch)
        .map(<[usize]>::to_vec)
        .collect();
    let mut failure = None;
    let load = |items: &[usize]| -> crate::Result<Vec<f32>> {
        let mut input = Vec::new();
        for &i in items {
            match image_input(&list[i], &format!("image {i}"), &c) {
                Ok(x) => input.extend(x),
                Err(e) => {
                    failure = Some(e);
                    return Err(crate::Error::param("images", format!("image {i}")));
                }
            }
        }
        Ok(input)
    };
    let outcomes = run_settings(
        std::slice::from_mut(&mut state.session),
        &settings,
        list.len(),
        &batches,
        load,
        None,
        |_| {},
    )
    .await;
    if let Some(e) = failure {
        return Err(e);
    }
    let outcomes = outcomes.map_err(js_error)?;
    let q = Quality::of(
        &outcomes[1],
        &outcomes[0],
        labels.as_deref(),
        Task::Classify,
    );
    to_js(&with_unit(&q, Unit::Image))
}

/// The images per GPU pass: `batch` where the options name it (refused over what the adapter
/// holds for this model, before anything runs), else the call's `default` or what the adapter holds.
fn batch_size(
    given: Option<usize>,
    default: usize,
    session: &crate::Session,
) -> Result<usize, WebError> {
    match given {
        Some(batch) => {
            session.check_batch_fits(batch)?;
            Ok(batch)
        }
        None => Ok(default.min(session.max_batch()).max(1)),
    }
}

async fn bench(state: &mut Inner, options: Option<JsValue>) -> Result<JsValue, WebError> {
    let c = state.session.config().clone();
    let o = Options::parse(options, &options::BENCH, c.depth)?;
    let pruning = state.pruning(&o)?;
    let batch = batch_size(o.batch, 1, &state.session)?;
    let input = vec![0.1f32; batch * state.session.image_len()];
    // Dense and pruned back to back, run by run: the speedup pairs runs of one moment.
    let (mut dense_ms, mut pruned_ms) = (Vec::new(), Vec::new());
    state.timed(&Pruning::dense(), &input, 1).await?;
    if !pruning.is_dense() {
        state.timed(&pruning, &input, 1).await?;
    }
    for _ in 0..o.runs {
        dense_ms.extend(state.timed(&Pruning::dense(), &input, 1).await?.1);
        if !pruning.is_dense() {
            pruned_ms.extend(state.timed(&pruning, &input, 1).await?.1);
        }
    }
    let mut out = BenchResult {
        batch,
        runs: o.runs,
        adapter: state.session.gpu().describe(),
        dense: Timings::of(&dense_ms),
        policy: None,
        schedule: None,
        pruned: None,
        speedup: None,
        flops_ratio: None,
    };
    if !pruning.is_dense() {
        let g = c.geometry();
        out.policy = Some(pruning.policy.name().into());
        out.schedule = Some(pruning.describe());
        out.speedup = Some(crate::eval::stats::median_ratio(&dense_ms, &pruned_ms));
        out.pruned = Some(Timings::of(&pruned_ms));
        out.flops_ratio = Some(pruning.flops(&g) / g.dense_flops());
    }
    to_js(&out)
}

/// `session.info`.
#[derive(Serialize, tsify::Tsify)]
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
    recommended: Vec<super::Recommended>,
}

/// Median and spread of one set of timings.
#[derive(Serialize, tsify::Tsify)]
#[serde(rename_all = "camelCase")]
struct Timings {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl Timings {
    fn of(t: &[f64]) -> Self {
        let (median_ms, min_ms, max_ms) = crate::eval::stats::median_spread(t);
        Timings {
            median_ms,
            min_ms,
            max_ms,
        }
    }
}

/// What `session.bench` resolves to.
#[derive(Serialize, tsify::Tsify)]
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
