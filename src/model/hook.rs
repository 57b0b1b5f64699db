//! The patch point of token pruning, from the model's side. A model knows nothing of policies: it
//! asks a [`TokenHook`] for extra attention terms, writes a block's attention probabilities only
//! when the hook reads them, and after the block's attention hands it a [`TokenState`] (plain
//! views, whatever the model's buffer layout) so that it may shrink the rows the MLP runs on.
//! A pre-LayerNorm ViT and a post-LayerNorm text encoder both describe themselves this way.

use crate::error::Result;
use crate::gpu::kernels::{AttentionBias, Features};
use crate::gpu::{GpuTensor, Kernels, Program};

/// A block's tokens at its pruning point.
pub struct TokenState<'a> {
    pub block: usize,
    pub batch: usize,
    /// Rows per image now.
    pub rows: usize,
    /// Leading rows that are never pruned: CLS, the distillation token (register tokens, text
    /// [CLS] and [SEP] go first too).
    pub protected: usize,
    pub heads: usize,
    /// `[B, rows, width]`: the token states the rest of the block reads. Pruning rewrites the
    /// first rows of every image in place.
    pub tokens: &'a GpuTensor,
    pub width: usize,
    /// `[B, heads, rows, rows]` attention probabilities, when the hook asked for them.
    pub probs: Option<&'a GpuTensor>,
    /// The block's keys, all heads concatenated.
    pub keys: Features<'a>,
}

/// The live rows of a batch whose pruning masks rows: every image keeps its first `counts[b]`.
#[derive(Clone, Debug)]
pub struct MaskedRows {
    /// `[B]` live rows per image.
    pub counts: GpuTensor,
    /// The live rows of the whole batch, packed (`Kernels::live_row_map`): what row-wise kernels
    /// (LayerNorm, the linear layers) run over.
    pub map: GpuTensor,
}

/// What a model asks of token pruning at each block.
pub trait TokenHook {
    /// Key-side terms of block `block`'s attention softmax.
    fn attention_bias(&self, _block: usize) -> AttentionBias<'_> {
        AttentionBias::default()
    }

    /// Whether block `block`'s attention probabilities are read: such blocks write them (scores
    /// GEMM, softmax, context GEMM); the others may run the fused attention kernel.
    fn needs_attention_probs(&self, _block: usize) -> bool {
        false
    }

    /// Where pruning masks rows instead of removing them (threshold pruning: the count differs per
    /// image), the rows still live after block `block`'s pruning point. Later kernels compute
    /// those rows only; nothing reads the others.
    fn live_rows(&self, _block: usize) -> Option<&MaskedRows> {
        None
    }

    /// Where block `block`'s pruning step left its survivors: rows laid out like the tokens,
    /// which the block's MLP reads instead of them, its last GEMM writing `tokens = rows +
    /// MLP(rows)` (so the step copies nothing back). None where no step ran at `block`.
    fn compacted_rows(&self, _block: usize) -> Option<&GpuTensor> {
        None
    }

    /// Runs after block `state.block`'s attention; appends its steps and returns the rows per
    /// image from here on.
    fn after_attention(
        &mut self,
        _k: &Kernels,
        _p: &mut Program,
        state: &TokenState,
    ) -> Result<usize> {
        Ok(state.rows)
    }
}

/// The dense model: no pruning.
pub struct Dense;

impl TokenHook for Dense {}
