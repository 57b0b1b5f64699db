//! What the merging policies share: ToMe's metric (the keys averaged over heads), each source's
//! most similar destination on it, and merging the best-matched sources away.

use crate::error::Result;
use crate::gpu::kernels::{Features, MatchSplit};
use crate::gpu::{GpuTensor, Step};
use crate::prune::{PrunePoint, Selection};

/// ToMe's metric of every row: `[B, n, dh]` (rounded up to a multiple of 4 with zeros), the keys
/// averaged over heads.
pub fn metric(at: &PrunePoint, steps: &mut Vec<Step>) -> Result<GpuTensor> {
    let metric = at.work.per_row("head-mean keys", head_dim(at));
    steps.push(at.k.head_mean_keys(&at.label("metric"), at.shape, at.keys, &metric)?);
    Ok(metric)
}

/// The metric as token features.
pub fn view<'a>(at: &PrunePoint, metric: &'a GpuTensor) -> Features<'a> {
    Features::packed(metric, at.shape.n, head_dim(at))
}

fn head_dim(at: &PrunePoint) -> usize {
    Features::vec4_width(at.keys.width / at.shape.heads.max(1))
}

/// Every source's most similar destination (cosine on `metric`), sources and destinations as
/// `split` says, masked rows out: `(keep score = -best similarity, destination row)` per row.
pub fn best_match(
    at: &PrunePoint,
    steps: &mut Vec<Step>,
    metric: &GpuTensor,
    split: MatchSplit,
    flags: Option<&GpuTensor>,
) -> Result<(GpuTensor, GpuTensor)> {
    let score = at.work.rows("match score");
    let dst = at.work.rows("match destination");
    steps.push(at.k.best_match(
        &at.label("match"),
        at.shape,
        view(at, metric),
        split,
        flags,
        at.valid,
        &score,
        &dst,
    )?);
    Ok((score, dst))
}

/// Every row `flags` removes (flag 0) merges into its most similar survivor (flag 1) by ToMe's
/// metric: how wpr-merge and zero-tprune-merge carry out their choice.
pub fn merge_removed(
    at: &PrunePoint,
    steps: &mut Vec<Step>,
    flags: GpuTensor,
) -> Result<Selection> {
    let metric = metric(at, steps)?;
    let (_, dst) = best_match(at, steps, &metric, MatchSplit::Flags, Some(&flags))?;
    Ok(Selection::Merge { flags, dst })
}

/// Every row `flags` removes (flag 0) spreads over its `k` most similar survivors (flag 1) by
/// ToMe's metric, with shares `softmax(cos / tau)`: Token Transforming's many-to-many merge.
pub fn spread_removed(
    at: &PrunePoint,
    steps: &mut Vec<Step>,
    flags: GpuTensor,
    (k, tau): (usize, f32),
) -> Result<Selection> {
    let metric = metric(at, steps)?;
    let weight = at.work.per_row("spread shares", k);
    let dst = at.work.per_row("spread destinations", k);
    steps.push(at.k.spread_match(
        &at.label("spread"),
        at.shape,
        view(at, &metric),
        &flags,
        at.valid,
        (k, tau),
        &weight,
        &dst,
    )?);
    Ok(Selection::Spread {
        flags,
        dst,
        weight,
        k,
    })
}

/// Keep the target's rows, the sources least similar to their destination among them; the other
/// sources merge into their destinations.
pub fn merge_best(
    at: &PrunePoint,
    steps: &mut Vec<Step>,
    score: &GpuTensor,
    dst: GpuTensor,
) -> Result<Selection> {
    let flags = at.work.rows("keep flags");
    steps.push(at.k.select_topk(
        &at.label("merge_select"),
        at.shape,
        score,
        &flags,
        at.keep_rows()?,
    )?);
    Ok(Selection::Merge { flags, dst })
}
