//! Tensor names every family shares: a layer's weight and bias, and the six layers of a transformer
//! block. Each family spells its own checkpoints' names in its folder (`vit/names.rs`,
//! `bert/weights.rs`); the loaders only ever ask those maps.

/// A layer with a weight and a bias (linear, convolution or LayerNorm).
#[derive(Debug, Clone)]
pub struct LayerNames {
    pub weight: String,
    pub bias: String,
}

impl LayerNames {
    pub(crate) fn new(base: impl std::fmt::Display) -> Self {
        LayerNames {
            weight: format!("{base}.weight"),
            bias: format!("{base}.bias"),
        }
    }
}

/// The attention's input projection: timm fuses q, k and v into one layer, Hugging Face keeps three.
#[derive(Debug, Clone)]
pub enum QkvNames {
    Fused(LayerNames),
    /// Query, key, value.
    Separate([LayerNames; 3]),
}

/// The tensors of one transformer block.
#[derive(Debug, Clone)]
pub struct BlockNames {
    pub norm1: LayerNames,
    pub qkv: QkvNames,
    pub proj: LayerNames,
    pub norm2: LayerNames,
    pub fc1: LayerNames,
    pub fc2: LayerNames,
}
