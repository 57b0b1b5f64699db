//! ToMe: bipartite soft matching on head-averaged keys; the `r` most similar (source, destination)
//! pairs merge by a size-weighted average, and later blocks add `log(size)` to attention logits.

use super::plan::StepCtx;
use crate::error::Result;
use crate::gpu::prune_kernels::{Features, MatchSplit};
use crate::gpu::Program;

pub fn step(ctx: &StepCtx, p: &mut Program) -> Result<()> {
    let (k, s, a, o) = (ctx.k, ctx.scratch, ctx.a, ctx.out);
    let (n, d) = (ctx.shape.n, ctx.c.embed_dim);
    let dh = ctx.c.head_dim();
    p.push(k.head_mean_keys(&ctx.label("metric"), ctx.shape, d, &a.qkv, &s.metric)?);
    let metric = Features {
        t: &s.metric,
        width: dh,
        off: 0,
        row_stride: dh,
        img_stride: n * dh,
    };
    p.push(k.best_match(
        &ctx.label("match"),
        ctx.shape,
        metric,
        MatchSplit::Parity,
        None,
        &s.match_score,
        &s.match_dst,
    )?);
    // Keeping all but the r best-matched sources.
    p.push(k.select_topk(
        &ctx.label("merge_select"),
        ctx.shape,
        &s.match_score,
        &s.flags,
        ctx.rows_out(),
    )?);
    ctx.compact(p)?;
    let sizes_out = o.sizes.as_ref().expect("ToMe steps carry token sizes");
    p.push(k.tome_merge(
        &ctx.label("merge"),
        ctx.shape,
        (o.rows_out, d),
        &a.x,
        &o.src,
        &s.flags,
        &s.match_dst,
        (ctx.sizes_in, sizes_out),
        &a.attn,
    )?);
    ctx.copy_back(p)
}
