//! Token Transforming (Zeng et al., 2025), as reconstructed here: Weighted PageRank keeps the top-k
//! (as `wpr`), and every other token spreads over its SPREAD most similar kept tokens by
//! head-averaged keys, each getting the share `softmax(cos / TAU)` of it (of its size, too, so
//! proportional attention counts it fractionally). A many-to-many merge: `wpr-merge` is the
//! spread of one. The paper's method section could not be read here, so SPREAD and TAU are the
//! narrowest spread measured, the one that cost least on the calibration images (wider spreads
//! blurred the kept tokens more; docs/pruning.md, "Many-to-many merging").

use super::wpr_merge::WprMerge;
use super::{matching, wpr};
use crate::error::Result;
use crate::gpu::Step;
use crate::prune::{Opt, PolicyDef, PrunePoint, Reads, Selection, Shape};

/// Kept tokens each removed token spreads over.
const SPREAD: usize = 2;
/// The softmax temperature of the shares, on cosine similarity: 0.02 gives the nearer of two
/// kept tokens 0.62 of a removed token when its cosine is 0.01 higher.
const TAU: f32 = 0.02;

pub struct TokenTransforming;

impl PolicyDef for TokenTransforming {
    fn name(&self) -> &'static str {
        "token-transforming"
    }

    fn help(&self) -> &'static str {
        "Weighted PageRank keeps the top-k; every other token spreads over its two most similar \
         kept ones, shared by similarity (Token Transforming's many-to-many merge)"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn merges(&self) -> bool {
        true
    }

    /// `--flops`: the schedule of `wpr-merge`, which it generalises.
    fn default_shape(&self) -> Shape {
        WprMerge.default_shape()
    }

    /// `wpr-merge`'s: the options of its WPR stage.
    fn options(&self) -> &'static [Opt] {
        WprMerge.options()
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let flags = wpr::importance(at, steps, &at.all_rows())?;
        matching::spread_removed(at, steps, flags, (SPREAD, TAU))
    }
}
