//! Threshold pruning (LTP style): drop patch tokens whose received attention, scaled so that uniform
//! attention is 1, is below a per-block threshold. The kept count differs per image, so rows stay
//! allocated (masked rows): the first `count[b]` rows of image `b` are valid and later softmaxes
//! ignore the rest.

use super::plan::StepCtx;
use super::schedule::Keep;
use crate::error::Result;
use crate::gpu::Program;

pub fn step(ctx: &StepCtx, p: &mut Program) -> Result<()> {
    let (k, s) = (ctx.k, ctx.scratch);
    let Keep::Threshold(theta) = ctx.out.step.keep else {
        unreachable!("the schedule gives threshold steps a threshold")
    };
    p.push(k.received_attention(
        &ctx.label("received_attention"),
        ctx.shape,
        &ctx.a.probs,
        ctx.valid_in,
        &s.score,
    )?);
    p.push(k.select_threshold(
        &ctx.label("threshold"),
        ctx.shape,
        &s.score,
        ctx.valid_in,
        &s.flags,
        theta,
    )?);
    ctx.compact_and_gather(p)
}
