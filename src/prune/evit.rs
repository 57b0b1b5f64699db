//! EViT: keep the patch tokens the CLS token attends to most (averaged over heads).

use super::plan::StepCtx;
use crate::error::Result;
use crate::gpu::Program;

pub fn step(ctx: &StepCtx, p: &mut Program) -> Result<()> {
    let (k, s) = (ctx.k, ctx.scratch);
    p.push(k.cls_attention(
        &ctx.label("cls_attention"),
        ctx.shape,
        &ctx.a.probs,
        &s.score,
    )?);
    ctx.select_top(p)?;
    ctx.compact_and_gather(p)
}
