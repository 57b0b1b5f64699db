//! Random drop: a seeded hash of (seed, step, image, original token) as the score. The honest baseline.

use super::plan::StepCtx;
use crate::error::Result;
use crate::gpu::Program;

pub fn step(ctx: &StepCtx, p: &mut Program) -> Result<()> {
    let (k, s) = (ctx.k, ctx.scratch);
    p.push(k.random_score(
        &ctx.label("random"),
        ctx.shape,
        ctx.orig_in,
        &s.score,
        ctx.options.seed,
        ctx.index as u32,
    )?);
    ctx.select_top(p)?;
    ctx.compact_and_gather(p)
}
