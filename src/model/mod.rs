//! Models: configuration, weights (timm and Hugging Face layouts) and the ViT/DeiT graph.

pub mod config;
mod config_parse;
pub mod flops;
pub mod vit;
pub mod weights;

pub use config::{Interpolation, Preprocess, ViTConfig};
pub use weights::{BlockWeights, ModelWeights};
