//! Models: configuration, weights (timm and Hugging Face layouts), the ViT/DeiT graph, and the
//! pruning point every model exposes ([`hook`]).

pub mod config;
mod config_parse;
pub mod flops;
pub mod hook;
pub mod vit;
pub mod weights;

pub use config::{Interpolation, Preprocess, ViTConfig};
pub use weights::{BlockWeights, ModelWeights};
