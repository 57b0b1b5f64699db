//! Zero-TPrune: (1) pre-rank tokens by received attention; (2) similarity stage: each token of the
//! less important half finds its most similar key in the important half, and the `r` closest
//! duplicates are dropped; (3) importance stage: Weighted PageRank on the survivors keeps the top k.

use super::wpr;
use crate::error::Result;
use crate::gpu::kernels::{Features, MatchSplit, TokenShape, TopCount};
use crate::gpu::{GpuTensor, Step};
use crate::prune::{Opt, PolicyDef, PrunePoint, Reads, Selection, Shape, KEEP_RATE_FAMILY};

pub struct ZeroTPrune;

/// Tokens the similarity stage drops: its share of the step's drop, at most the candidate half.
pub fn similarity_drop(sim: f32, tokens_in: usize, keep: usize) -> usize {
    let drop = tokens_in - keep;
    (((sim as f64) * drop as f64).round() as usize).min(tokens_in / 2)
}

impl PolicyDef for ZeroTPrune {
    fn name(&self) -> &'static str {
        "zero-tprune"
    }

    fn help(&self) -> &'static str {
        "pre-rank by received attention, drop near-duplicate keys of the less important half, then \
         Weighted PageRank on the survivors, heads combined, top-k"
    }

    fn reads(&self) -> Reads {
        Reads {
            attention: true,
            keys: true,
            ..Reads::default()
        }
    }

    /// `--flops`: a late-heavy ramp where it reaches the target (80% of dense FLOPs on DeiT-Tiny),
    /// else the published schedule, the same keep rate at 2, 4, 6, 8, 10 (docs/pruning.md,
    /// "Default schedules").
    fn default_shape(&self) -> Shape {
        Shape(&["late-heavy", KEEP_RATE_FAMILY])
    }

    fn options(&self) -> &'static [Opt] {
        &[Opt::Sim, Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let flags = keep_flags(at, steps, at.options.sim)?;
        Ok(Selection::Keep { flags })
    }
}

/// The three stages with similarity share `sim`: the `[B, n]` flags of the rows that survive.
pub fn keep_flags(at: &PrunePoint, steps: &mut Vec<Step>, sim: f32) -> Result<GpuTensor> {
    let (k, s) = (at.k, at.shape);
    let patches_in = s.n - s.prefix;
    let keep = at.keep_rows()? - s.prefix;
    let r = similarity_drop(sim, patches_in, keep);
    if r == 0 {
        return wpr::importance(at, steps, &at.all_rows());
    }
    let match_score = similarity_to_important(at, steps)?;
    let survivors = at.work.rows("similarity survivors");
    steps.push(k.select_topk(
        &at.label("drop_similar"),
        s,
        &match_score,
        &survivors,
        s.n - r,
    )?);
    // (3) Importance on the survivors, when the similarity stage left it anything to remove
    // (with everything removed already, its top-k would keep every survivor).
    if r == patches_in - keep {
        return Ok(survivors);
    }
    wpr::importance(at, steps, &survivors)
}

/// Stages (1) and (2)'s match: the important half by received attention (the prefix and half the
/// valid patch rows, rounded up) and, for every other valid patch row (a candidate), its most
/// similar important row by cosine on the full key rows. Returns `[B, n]` keep scores: minus that
/// cosine for candidates, `3e38` for the rest.
pub fn similarity_to_important(at: &PrunePoint, steps: &mut Vec<Step>) -> Result<GpuTensor> {
    let (k, s) = (at.k, at.shape);
    // (1) Pre-rank: the important half (flag 1) and the candidates (flag 0), scored and selected
    // in one step.
    let important = at.work.rows("important half");
    steps.push(k.received_topk(
        &at.label("important_half"),
        s,
        at.probs()?,
        at.valid,
        &important,
        TopCount::HalfOfPatches,
    )?);
    // (2) Similarity on the full key rows.
    let match_score = at.work.rows("match score");
    let match_dst = at.work.rows("match destination");
    let packed;
    let keys = if at.keys.is_vec4() {
        at.keys
    } else {
        // A width the matching kernel cannot read as vec4s: one "head" is a packed copy.
        let width = Features::vec4_width(at.keys.width);
        packed = at.work.per_row("packed keys", width);
        let one_head = TokenShape { heads: 1, ..s };
        steps.push(k.head_mean_keys(&at.label("pack_keys"), one_head, at.keys, &packed)?);
        Features::packed(&packed, s.n, width)
    };
    steps.push(k.best_match(
        &at.label("similarity"),
        s,
        keys,
        MatchSplit::Flags,
        Some(&important),
        at.valid,
        &match_score,
        &match_dst,
    )?);
    Ok(match_score)
}
