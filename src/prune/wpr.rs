//! Weighted PageRank importance: per head, iterate `s <- A^T s` on the surviving tokens (each token
//! votes with the attention it pays, weighted by its own importance), combine heads, keep the top k.
//! Zero-TPrune's importance stage, and the `wpr` ablation on its own.

use super::plan::StepCtx;
use crate::error::Result;
use crate::gpu::{GpuTensor, Program};

/// Importance scores into `scratch.score` for the rows flagged in `alive`, then the top-k flags.
pub fn importance(ctx: &StepCtx, p: &mut Program, alive: &GpuTensor) -> Result<()> {
    let (k, s, o) = (ctx.k, ctx.scratch, ctx.options);
    let iters = o.wpr_iters(ctx.out.step.block, ctx.c.depth);
    p.push(k.wpr(
        &ctx.label("pagerank"),
        ctx.shape,
        &ctx.a.probs,
        alive,
        &s.head_scores,
        iters,
        o.eps,
    )?);
    p.push(k.combine_heads(
        &ctx.label("combine_heads"),
        ctx.shape,
        &s.head_scores,
        alive,
        &s.score,
        o.heads,
        o.band,
    )?);
    ctx.select_top(p)?;
    Ok(())
}

pub fn step(ctx: &StepCtx, p: &mut Program) -> Result<()> {
    importance(ctx, p, &ctx.scratch.ones_u32)?;
    ctx.compact_and_gather(p)
}
