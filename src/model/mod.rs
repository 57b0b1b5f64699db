//! Models: one folder per family, and what the families share.
//!
//! - [`family`]: what a family is to the session (the [`Family`] trait);
//! - [`vit`]: ViT / DeiT image classifiers; [`bert`]: BERT-style text encoders;
//! - [`layers`]: the GPU layers every graph is built from (linear, LayerNorm, attention);
//! - [`tensors`], [`names`]: weights on the host and the tensor names every family shares;
//! - [`hook`]: the pruning point every graph exposes; [`geometry`]: what pruning sees of a model
//!   (and the one FLOPs formula);
//! - [`precision`]: f32 or f16 storage; [`safetensors_check`]: the file layout, checked before reading;
//!   [`shards`]: a sharded checkpoint (an index and its shards) joined into one.

pub mod bert;
pub mod family;
pub mod geometry;
pub mod hook;
pub mod layers;
pub mod names;
pub mod precision;
pub mod safetensors_check;
#[cfg(not(target_arch = "wasm32"))]
pub mod shards;
pub mod tensors;
pub mod vit;

pub use family::{BatchShape, Dropped, Family, ItemOutput};
pub use geometry::{Modality, TokenGeometry};
pub use precision::Precision;
pub use tensors::{BlockWeights, LinearWeights, NormWeights};
pub use vit::{
    random, ConfigFiles, ImageOutput, Interpolation, ModelWeights, Preprocess, ViTConfig,
    VisionTransformer,
};
