//! zeroprune: a portable GPU runtime for vision transformers (ViT / DeiT) with zero-shot token pruning.
//!
//! WGSL compute shaders do all the work; one Rust host schedules them the same way on native
//! Vulkan / Metal / DX12 (wgpu) and in the browser (WebGPU).
//!
//! Map of the crate:
//! - [`gpu`]: device setup, buffers, the kernels (one module per WGSL family) and the step list a
//!   forward pass plays;
//! - [`model`]: configs, weights (timm and Hugging Face layouts), the ViT/DeiT graph, and the
//!   pruning point every model exposes;
//! - [`prune`]: policies (one file each), schedules, and the code that carries a selection out;
//! - [`session`]: the scheduler that owns compiled programs and runs batches of images;
//! - [`preprocess`], [`labels`]: images in, class names out; [`limits`]: what input may allocate;
//! - `draw` (feature `cli`): the command line's PNG charts and token panels;
//! - `web` (wasm32 only): the browser's entry points, a thin wasm-bindgen face on [`Session`].

// Only the command line draws PNGs: the browser package goes without the plotting and font crates.
#[cfg(feature = "cli")]
pub mod draw;
pub mod error;
pub mod eval;
pub mod gpu;
mod json;
pub mod labels;
pub mod limits;
pub mod model;
pub mod options;
pub mod preprocess;
pub mod prune;
pub mod session;
pub mod text;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, ErrorCode, Result};
pub use model::{ModelWeights, Preprocess, ViTConfig};
pub use session::{
    ImageOutput, Mode, Prediction, Run, RunOutput, Schedule, Session, TextOutput, TextSession,
};
