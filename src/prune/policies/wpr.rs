//! Weighted PageRank importance: per head, iterate `s <- A^T s` on the surviving tokens (each token
//! votes with the attention it pays, weighted by its own importance), combine heads, keep the top k.
//! Zero-TPrune's importance stage, and the `wpr` ablation on its own.

use crate::error::Result;
use crate::gpu::kernels::TokenShape;
use crate::gpu::{GpuTensor, Kernels, Step};
use crate::prune::{Opt, PolicyDef, PruneOptions, PrunePoint, Reads, Selection};

pub struct Wpr;

impl PolicyDef for Wpr {
    fn name(&self) -> &'static str {
        "wpr"
    }

    fn help(&self) -> &'static str {
        "Zero-TPrune's importance stage alone: Weighted PageRank, heads combined, top-k (the ablation)"
    }

    fn reads(&self) -> Reads {
        Reads {
            attention: true,
            ..Reads::default()
        }
    }

    fn options(&self) -> &'static [Opt] {
        &[Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let flags = importance(at, steps, &at.all_rows())?;
        Ok(Selection::Keep { flags })
    }
}

/// PageRank iterations at block `block` of a `depth`-block model: many early, one late (the
/// published setting), unless `--iters` overrides it.
pub fn iterations(o: &PruneOptions, block: usize, depth: usize) -> u32 {
    if let Some(t) = o.iters {
        t
    } else if block < 3 {
        30
    } else if block + 3 >= depth {
        1
    } else {
        10
    }
}

/// Importance scores of the rows flagged in `alive`, then the flags of the top k.
pub fn importance(at: &PrunePoint, steps: &mut Vec<Step>, alive: &GpuTensor) -> Result<GpuTensor> {
    let flags = at.work.rows("keep flags");
    scores_into(at, steps, alive, Some((&flags, at.keep_rows()?)))?;
    Ok(flags)
}

/// Weighted PageRank per head on the rows flagged in `alive`, heads combined: one score per row
/// (`-3e38` for rows not alive).
pub fn importance_scores(
    at: &PrunePoint,
    steps: &mut Vec<Step>,
    alive: &GpuTensor,
) -> Result<GpuTensor> {
    scores_into(at, steps, alive, None)
}

/// [`importance_scores`], and with `topk` the `keep` best rows flagged by the same step.
fn scores_into(
    at: &PrunePoint,
    steps: &mut Vec<Step>,
    alive: &GpuTensor,
    topk: Option<(&GpuTensor, usize)>,
) -> Result<GpuTensor> {
    let (k, o) = (at.k, at.options);
    let head_scores = at.work.per_row("head scores", at.shape.heads);
    let score = at.work.rows("score");
    // Sized for the first step's row count, the most any step needs, so that all share it.
    let first = TokenShape {
        n: at.work.rows_per_image(),
        ..at.shape
    };
    let matrix = at
        .work
        .values("pagerank matrix", Kernels::wpr_matrix_len(first));
    steps.push(k.wpr(
        &at.label("pagerank"),
        at.shape,
        at.probs()?,
        alive,
        &head_scores,
        &matrix,
        iterations(o, at.block, at.depth),
        o.eps,
    )?);
    steps.push(k.combine_heads(
        &at.label("combine_heads"),
        at.shape,
        &head_scores,
        alive,
        &score,
        o.heads,
        o.band,
        topk,
    )?);
    Ok(score)
}
