//! Zero-TPrune: (1) pre-rank tokens by received attention; (2) similarity stage: each token of the
//! less important half finds its most similar key in the important half, and the `r` closest
//! duplicates are dropped; (3) importance stage: Weighted PageRank on the survivors keeps the top k.

use super::plan::StepCtx;
use super::wpr;
use crate::error::Result;
use crate::gpu::prune_kernels::{Features, MatchSplit};
use crate::gpu::Program;

/// Tokens the similarity stage drops: its share of the step's drop, at most the candidate half.
pub fn similarity_drop(sim: f32, tokens_in: usize, keep: usize) -> usize {
    let drop = tokens_in - keep;
    (((sim as f64) * drop as f64).round() as usize).min(tokens_in / 2)
}

pub fn step(ctx: &StepCtx, p: &mut Program) -> Result<()> {
    let (k, s, a) = (ctx.k, ctx.scratch, ctx.a);
    let (n, prefix, d) = (ctx.shape.n, ctx.shape.prefix, ctx.c.embed_dim);
    let patches_in = n - prefix;
    let r = similarity_drop(ctx.options.sim, patches_in, ctx.rows_out() - prefix);
    if r == 0 {
        wpr::importance(ctx, p, &s.ones_u32)?;
        return ctx.compact_and_gather(p);
    }
    // (1) Pre-rank: the important half (flags2 = 1) and the candidates.
    p.push(k.received_attention(
        &ctx.label("received_attention"),
        ctx.shape,
        &a.probs,
        None,
        &s.score,
    )?);
    p.push(k.select_topk(
        &ctx.label("important_half"),
        ctx.shape,
        &s.score,
        &s.flags2,
        prefix + patches_in.div_ceil(2),
    )?);
    // (2) Similarity on the full key rows; the r candidates with the closest match are dropped.
    let keys = Features {
        t: &a.qkv,
        width: d,
        off: d,
        row_stride: 3 * d,
        img_stride: n * 3 * d,
    };
    p.push(k.best_match(
        &ctx.label("similarity"),
        ctx.shape,
        keys,
        MatchSplit::Flags,
        Some(&s.flags2),
        &s.match_score,
        &s.match_dst,
    )?);
    // The survivors replace the halves in flags2 (the match above has read them).
    p.push(k.select_topk(
        &ctx.label("drop_similar"),
        ctx.shape,
        &s.match_score,
        &s.flags2,
        n - r,
    )?);
    // (3) Importance on the survivors.
    wpr::importance(ctx, p, &s.flags2)?;
    ctx.compact_and_gather(p)
}
