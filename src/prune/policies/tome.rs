//! ToMe: bipartite soft matching on head-averaged keys; the `r` most similar (source, destination)
//! pairs merge by a size-weighted average, and later blocks add `log(size)` to attention logits.

use super::matching;
use crate::error::Result;
use crate::gpu::kernels::MatchSplit;
use crate::gpu::Step;
use crate::prune::{PolicyDef, PruneOptions, PrunePoint, Reads, Selection, Shape, StepLimit};

pub struct Tome;

impl PolicyDef for Tome {
    fn name(&self) -> &'static str {
        "tome"
    }

    fn help(&self) -> &'static str {
        "merges instead of dropping: bipartite soft matching on head-averaged keys, size-weighted \
         average, log(size) added to later attention logits"
    }

    fn reads(&self) -> Reads {
        Reads {
            keys: true,
            sizes: true,
            ..Reads::default()
        }
    }

    fn merges(&self) -> bool {
        true
    }

    /// Sources are every other patch token, so at most half can merge.
    fn step_limit(&self, tokens_in: usize, _options: &PruneOptions) -> StepLimit {
        StepLimit {
            max_removed: tokens_in / 2,
            why: Some("ToMe merges at most half the tokens per step"),
        }
    }

    /// A little at every block.
    fn default_blocks(&self, depth: usize) -> Vec<usize> {
        (0..depth).collect()
    }

    /// `--flops`: the same number merged at every block from a quarter of the depth on where that
    /// reaches the target (80% of dense FLOPs on DeiT-Tiny), else at every other block from 2
    /// (65%), else a falling ramp (50%): the best families of the schedule search on calibration
    /// images, level by level (docs/pruning.md, "Default schedules").
    fn default_shape(&self) -> Shape {
        Shape(&["uniform@late", "uniform@every-other", "falling"])
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let metric = matching::metric(at, steps)?;
        let (score, dst) = matching::best_match(at, steps, &metric, MatchSplit::Parity, None)?;
        // Keeping all but the r best-matched sources.
        matching::merge_best(at, steps, &score, dst)
    }
}
