//! Zero-TPrune whose removed tokens merge: its stages choose which tokens leave, with the whole
//! removal given to the similarity stage (what the importance stage still has to remove when a
//! step takes more than half); every token that leaves merges into its most similar survivor by
//! head-averaged keys (size-weighted, proportional attention later). Dropping is what made
//! Zero-TPrune lose on full-size photos (docs/pruning.md, "Why Zero-TPrune fell behind").

use super::{matching, zero_tprune};
use crate::error::Result;
use crate::gpu::Step;
use crate::prune::{Opt, PolicyDef, PrunePoint, Reads, Selection, Shape, KEEP_RATE_FAMILY};

pub struct ZeroTPruneMerge;

impl PolicyDef for ZeroTPruneMerge {
    fn name(&self) -> &'static str {
        "zero-tprune-merge"
    }

    fn help(&self) -> &'static str {
        "Zero-TPrune's stages choose (the less attended half's near-duplicates go first), and \
         every removed token merges into its most similar survivor"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn merges(&self) -> bool {
        true
    }

    /// `--flops`: the same number removed at every block from a quarter of the depth on, else at
    /// every block, else the same keep rate at 2, 4, 6, 8, 10 (docs/pruning.md, "Default
    /// schedules").
    fn default_shape(&self) -> Shape {
        Shape(&["uniform@late", "uniform@all", KEEP_RATE_FAMILY])
    }

    fn options(&self) -> &'static [Opt] {
        &[Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let flags = zero_tprune::keep_flags(at, steps, 1.0)?;
        matching::merge_removed(at, steps, flags)
    }
}
