//! Models: configuration, weights (timm and Hugging Face layouts), the ViT/DeiT graph, and the
//! pruning point every model exposes ([`hook`]).
//!
//! Loading: `config_json` types each layout's config files, `names` spells every tensor name of each
//! layout, `weights` has each layer load its own host weights; `vit` uploads them and runs the graph.

pub mod bert;
pub mod config;
mod config_json;
pub mod flops;
pub mod hook;
mod names;
pub mod precision;
pub mod random;
pub mod safetensors_check;
pub mod text_encoder;
pub mod vit;
pub mod weights;

pub use config::{Interpolation, Preprocess, ViTConfig};
pub use precision::Precision;
pub use weights::{BlockWeights, ConfigFiles, LinearWeights, ModelWeights, NormWeights};
