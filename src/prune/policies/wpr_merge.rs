//! WPR-merge: Weighted PageRank chooses the kept tokens (as `wpr`), and every removed token merges
//! into its most similar kept token by head-averaged keys (size-weighted, proportional attention
//! later), so what it carried is not lost.

use super::{matching, wpr};
use crate::error::Result;
use crate::gpu::Step;
use crate::prune::{Opt, PolicyDef, PrunePoint, Reads, Selection, Shape, KEEP_RATE_FAMILY};

pub struct WprMerge;

impl PolicyDef for WprMerge {
    fn name(&self) -> &'static str {
        "wpr-merge"
    }

    fn help(&self) -> &'static str {
        "Weighted PageRank keeps the top-k; every other token merges into its most similar kept one"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn merges(&self) -> bool {
        true
    }

    /// `--flops`: the same number removed at every block from a quarter of the depth on, else the
    /// same keep rate at 2, 4, 6, 8, 10 (docs/pruning.md, "Default schedules").
    fn default_shape(&self) -> Shape {
        Shape(&["uniform@late", KEEP_RATE_FAMILY])
    }

    fn options(&self) -> &'static [Opt] {
        &[Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let flags = wpr::importance(at, steps, &at.all_rows())?;
        matching::merge_removed(at, steps, flags)
    }
}
