//! FLOPs of a forward pass, counted from the shapes the kernels actually run (2 per multiply-add).
//! Matrix products only: patch embedding, QKV, attention scores and context, projection, MLP, head.
//! LayerNorm, softmax, GELU and residual adds are a fraction of a percent and are not counted.

use super::ViTConfig;

/// FLOPs of one block that runs on `tokens` tokens (attention) and `mlp_tokens` tokens (after a
/// pruning step inside the block, the MLP runs on fewer tokens).
pub fn block_flops(c: &ViTConfig, tokens: usize, mlp_tokens: usize) -> f64 {
    let (n, m, d, h) = (
        tokens as f64,
        mlp_tokens as f64,
        c.embed_dim as f64,
        c.mlp_dim as f64,
    );
    let qkv = 2.0 * n * d * 3.0 * d;
    let attention = 2.0 * 2.0 * n * n * d; // Q.K^T and P.V over all heads
    let proj = 2.0 * n * d * d;
    let mlp = 2.0 * 2.0 * m * d * h;
    qkv + attention + proj + mlp
}

/// FLOPs outside the blocks: patch embedding and the classifier head.
pub fn stem_and_head_flops(c: &ViTConfig) -> f64 {
    let pp = (c.in_chans * c.patch_size * c.patch_size) as f64;
    let embed = 2.0 * c.num_patches() as f64 * pp * c.embed_dim as f64;
    let head = 2.0 * (c.num_prefix_tokens() * c.embed_dim * c.num_classes) as f64;
    embed + head
}

/// FLOPs per image of the dense model.
pub fn dense_flops(c: &ViTConfig) -> f64 {
    let n = c.num_tokens();
    stem_and_head_flops(c) + c.depth as f64 * block_flops(c, n, n)
}
