//! The token geometry of a model: what the pruning code needs to know of it. Schedules, FLOPs
//! targets, the schedule search and FLOPs counting all read this, never a family's config, so an
//! image model, a text of `n` tokens and any later family count the same way.
//!
//! FLOPs are counted from the shapes the kernels run (2 per multiply-add), matrix products only:
//! QKV, attention scores and context, projection, MLP, plus what a family does outside its blocks
//! (patch embedding and head). LayerNorm, softmax, GELU and residual adds are a fraction of a
//! percent and are not counted.

/// What an item is: pruning recommendations are measured per modality.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    #[default]
    Image,
    Text,
}

/// The rows one item (an image, a text) enters the blocks with, and the blocks' widths.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TokenGeometry {
    /// An image's patches or a text's tokens.
    pub modality: Modality,
    /// Leading rows never pruned: CLS, a distillation token, registers; a text's [CLS] and [SEP].
    pub protected: usize,
    /// Rows a schedule may prune: an image's patches, a text's other tokens.
    pub prunable: usize,
    /// Blocks (layers).
    pub depth: usize,
    /// Model width.
    pub width: usize,
    pub heads: usize,
    /// Hidden width of the MLP.
    pub mlp: usize,
    /// FLOPs per item outside the blocks: patch embedding and classifier head.
    pub fixed_flops: f64,
}

impl TokenGeometry {
    /// Rows per item before any pruning.
    pub fn rows(&self) -> usize {
        self.protected + self.prunable
    }

    /// FLOPs of one block that runs attention on `tokens` rows and its MLP on `mlp_tokens` (after a
    /// pruning step inside the block, the MLP runs on fewer rows).
    pub fn block_flops(&self, tokens: usize, mlp_tokens: usize) -> f64 {
        let (n, m, d, h) = (
            tokens as f64,
            mlp_tokens as f64,
            self.width as f64,
            self.mlp as f64,
        );
        let qkv = 2.0 * n * d * 3.0 * d;
        let attention = 2.0 * 2.0 * n * n * d; // Q.K^T and P.V over all heads
        let proj = 2.0 * n * d * d;
        let mlp = 2.0 * 2.0 * m * d * h;
        qkv + attention + proj + mlp
    }

    /// FLOPs per item of the dense model.
    pub fn dense_flops(&self) -> f64 {
        let n = self.rows();
        self.fixed_flops + self.depth as f64 * self.block_flops(n, n)
    }
}
