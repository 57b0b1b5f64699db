//! Shared helpers for the integration tests: one GPU device per test binary, GPU buffers and
//! seeded data, fixtures, comparisons, broken models; the command line in [`cli`], text models in
//! [`text`]. Each test binary (`tests/NAME/main.rs`) declares it with
//! `#[path = "../common/mod.rs"] mod common;`.
#![allow(dead_code)]

use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroprune::gpu::{AdapterChoice, GpuContext, GpuTensor, Kernels, Program, Step};

/// A plain ViT's config of DeiT-Tiny's shape: a class token and its head, GELU, no registers, no
/// LayerNorm before the blocks, no projection. Tests state what differs (`..plain_vit()`).
pub fn plain_vit() -> zeroprune::ViTConfig {
    zeroprune::ViTConfig {
        image_size: (224, 224),
        patch_size: 16,
        in_chans: 3,
        embed_dim: 192,
        depth: 12,
        num_heads: 3,
        mlp_dim: 768,
        num_classes: 1000,
        distilled: false,
        registers: 0,
        class_token: true,
        pool: zeroprune::model::vit::Pool::Token,
        fc_norm: false,
        activation: zeroprune::gpu::kernels::Activation::Gelu,
        pre_norm: false,
        projection_dim: None,
        layer_norm_eps: 1e-6,
        class_names: None,
        preprocess: zeroprune::Preprocess::imagenet(224),
    }
}

/// The `zeroprune` binary, run as a user would (needs the `cli` feature).
#[cfg(feature = "cli")]
pub mod cli;
/// Text models: tokenizers and encoded batches.
#[cfg(not(target_arch = "wasm32"))]
pub mod text;

/// The device every test of a binary shares (lavapipe in CI: `WGPU_BACKEND=vulkan`; the page's
/// WebGPU adapter in the browser, opened by [`init`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu() -> &'static GpuContext {
    static GPU: std::sync::OnceLock<GpuContext> = std::sync::OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = GpuContext::new_blocking(&AdapterChoice::from_env())
            .expect("tests need a GPU adapter (on Linux: Mesa lavapipe, WGPU_BACKEND=vulkan)");
        eprintln!("test adapter: {}", gpu.describe());
        gpu
    })
}

/// The kernel library of the shared device.
#[cfg(not(target_arch = "wasm32"))]
pub fn kernels() -> &'static Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    K.get_or_init(|| Kernels::new(gpu()))
}

// The browser has one thread and opens its device asynchronously: `init` runs before every test.
#[cfg(target_arch = "wasm32")]
thread_local! {
    static BROWSER: std::cell::OnceCell<(&'static GpuContext, &'static Kernels)> =
        const { std::cell::OnceCell::new() };
}

#[cfg(target_arch = "wasm32")]
pub async fn init() {
    if BROWSER.with(|b| b.get().is_some()) {
        return;
    }
    let choice = AdapterChoice {
        backends: Some(wgpu::Backends::BROWSER_WEBGPU),
        name: None,
    };
    let gpu: &'static GpuContext = Box::leak(Box::new(
        GpuContext::new(&choice)
            .await
            .expect("tests need a WebGPU adapter"),
    ));
    let k: &'static Kernels = Box::leak(Box::new(Kernels::new(gpu)));
    BROWSER.with(|b| {
        let _ = b.set((gpu, k));
    });
}

#[cfg(target_arch = "wasm32")]
pub fn gpu() -> &'static GpuContext {
    BROWSER.with(|b| b.get().expect("common::init().await runs first").0)
}

#[cfg(target_arch = "wasm32")]
pub fn kernels() -> &'static Kernels {
    BROWSER.with(|b| b.get().expect("common::init().await runs first").1)
}

/// Declares GPU tests written as `async fn`s: natively one `#[test]` each (blocking on the future),
/// in the browser one `#[wasm_bindgen_test]` each, so both run the same assertions.
#[macro_export]
macro_rules! gpu_tests {
    ($($name:ident),* $(,)?) => {
        #[cfg(not(target_arch = "wasm32"))]
        mod native {
            $(#[test]
            fn $name() {
                pollster::block_on(super::$name())
            })*
        }
        #[cfg(target_arch = "wasm32")]
        mod browser {
            wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);
            $(#[wasm_bindgen_test::wasm_bindgen_test]
            async fn $name() {
                $crate::common::init().await;
                super::$name().await
            })*
        }
    };
}

/// Play `steps` as one program: one compute pass, one submit.
pub fn run(steps: impl IntoIterator<Item = Step>) {
    let g = gpu();
    let mut program = Program::default();
    program.extend(steps);
    let mut encoder = g.device.create_command_encoder(&Default::default());
    program.encode(&mut encoder);
    g.queue.submit([encoder.finish()]);
    g.check().expect("GPU error");
}

/// An f32 buffer on the shared device holding `data`.
pub fn upload(data: &[f32]) -> GpuTensor {
    GpuTensor::from_slice(gpu(), "test input", data)
}

/// A u32 buffer on the shared device holding `data`.
pub fn upload_u32(data: &[u32]) -> GpuTensor {
    GpuTensor::from_slice(gpu(), "test input", data)
}

/// Read an f32 buffer back.
pub async fn read(t: &GpuTensor) -> Vec<f32> {
    t.read::<f32>(gpu()).await.expect("readback")
}

/// Read a u32 buffer back.
pub async fn read_u32(t: &GpuTensor) -> Vec<u32> {
    t.read::<u32>(gpu()).await.expect("readback")
}

/// The seeded generator of the random test data (no OS randomness: the browser build has none).
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[lo, hi)`.
pub fn uniform(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// `../shared` beside the repository: the real model and images.
pub fn shared() -> PathBuf {
    repo().join("../shared")
}

/// Read an f32 tensor from a safetensors file.
pub fn read_tensor(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

/// An i32 tensor from a safetensors file (token ids, lengths).
pub fn read_tensor_i32(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<i32>) {
    let (shape, v) = read_tensor(path, name);
    (shape, v.iter().map(|x| x.to_bits() as i32).collect())
}

/// The real sentences of the text fixtures (`tests/fixtures/text/sentences.json`): `tiny` or `minilm`.
pub fn text_sentences(which: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture("text/sentences.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[which]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The pruning texts of `tests/fixtures/text/prune-texts.json`: `tiny` or `minilm`.
pub fn prune_texts(which: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture("text/prune-texts.json")).unwrap();
    let all: std::collections::HashMap<String, Vec<String>> = serde_json::from_str(&text).unwrap();
    all[which].clone()
}

/// Largest |a - b| relative to the largest |b| (and at least 1e-6).
pub fn max_rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The cosine of the angle between `a` and `b`, in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

/// Tensors of a safetensors file as a name -> (dtype, shape, bytes) map, to edit and write back.
pub type Tensors = std::collections::BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

pub fn read_tensors(path: &std::path::Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(name, v)| {
            (
                name.to_string(),
                (v.dtype(), v.shape().to_vec(), v.data().to_vec()),
            )
        })
        .collect()
}

pub fn serialize(tensors: &Tensors) -> Vec<u8> {
    let views: Vec<(&str, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.as_str(),
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize(views, None).unwrap()
}

// ------------------------------------------------------------------------------------------------
// Broken models and files for the bad-input tests.

pub fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// A copy of fixture `name` (model.safetensors and its JSON files) with the tensors edited by `edit`.
#[cfg(not(target_arch = "wasm32"))]
pub fn broken_model(name: &str, edit: impl FnOnce(&mut Tensors)) -> tempfile::TempDir {
    let src = fixture(name);
    let dir = tempfile::TempDir::new().unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        if src.join(f).is_file() {
            std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
        }
    }
    let mut tensors = read_tensors(&src.join("model.safetensors"));
    edit(&mut tensors);
    std::fs::write(dir.path().join("model.safetensors"), serialize(&tensors)).unwrap();
    dir
}

/// A copy of fixture `name` with `file` (config.json or preprocessor_config.json) edited by `edit`.
#[cfg(not(target_arch = "wasm32"))]
pub fn with_json(
    name: &str,
    file: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = broken_model(name, |_| {});
    let path = dir.path().join(file);
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    dir
}

/// A copy of fixture `name` whose `file` holds exactly `text`.
#[cfg(not(target_arch = "wasm32"))]
pub fn with_text(name: &str, file: &str, text: &str) -> tempfile::TempDir {
    let dir = broken_model(name, |_| {});
    std::fs::write(dir.path().join(file), text).unwrap();
    dir
}

/// A single file with these bytes, in its own temporary folder.
#[cfg(not(target_arch = "wasm32"))]
pub fn file_with(bytes: &[u8], file_name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join(file_name);
    std::fs::write(&path, bytes).unwrap();
    (dir, path)
}

/// `ModelWeights::load` must fail: the error.
#[cfg(not(target_arch = "wasm32"))]
pub fn load_err(path: &std::path::Path) -> zeroprune::Error {
    match zeroprune::ModelWeights::load(path) {
        Ok(w) => panic!(
            "{} loaded ({:?}) but should have been rejected",
            path.display(),
            w.config
        ),
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            e
        }
    }
}

/// The Display text of `e` contains every one of `parts`.
pub fn assert_mentions(e: &zeroprune::Error, parts: &[&str]) {
    let msg = e.to_string();
    for p in parts {
        assert!(
            msg.contains(p),
            "message {msg:?} should mention {p:?} ({e:?})"
        );
    }
}
