//! ToMe with protection: the top `--protect` share of the patch tokens by Weighted PageRank
//! importance never merge away (they may still receive merges); the rest is ToMe's bipartite
//! matching on head-averaged keys, size-weighted merging and proportional attention.

use super::{matching, wpr};
use crate::error::Result;
use crate::gpu::kernels::{MatchSplit, RoleSplit};
use crate::gpu::Step;
use crate::prune::{
    Opt, PolicyDef, PruneOptions, PrunePoint, Reads, Selection, Shape, StepLimit, KEEP_RATE_FAMILY,
};

pub struct TomeProtect;

impl PolicyDef for TomeProtect {
    fn name(&self) -> &'static str {
        "tome-protect"
    }

    fn help(&self) -> &'static str {
        "ToMe whose merge sources exclude the --protect share (default 0.1) of tokens most \
         important by Weighted PageRank"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn merges(&self) -> bool {
        true
    }

    /// Sources are the even patch positions; in the worst case every protected token is one.
    fn step_limit(&self, tokens_in: usize, options: &PruneOptions) -> StepLimit {
        StepLimit {
            max_removed: (tokens_in / 2).saturating_sub(options.protected(tokens_in)),
            why: Some(
                "tome-protect merges at most half the tokens per step, less the protected share",
            ),
        }
    }

    fn default_blocks(&self, depth: usize) -> Vec<usize> {
        (0..depth).collect()
    }

    /// `--flops`: as ToMe, late then every other block; past those, the same keep rate at every
    /// block (docs/pruning.md, "Default schedules").
    fn default_shape(&self) -> Shape {
        Shape(&["uniform@late", "uniform@every-other", KEEP_RATE_FAMILY])
    }

    fn options(&self) -> &'static [Opt] {
        &[Opt::Protect, Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let s = at.shape;
        let importance = wpr::importance_scores(at, steps, &at.all_rows())?;
        let roles = at.work.rows("merge roles");
        steps.push(at.k.split_roles(
            &at.label("protect"),
            s,
            &importance,
            &roles,
            RoleSplit::ParityProtect,
            at.options.protected(s.n - s.prefix),
        )?);
        let metric = matching::metric(at, steps)?;
        let (score, dst) =
            matching::best_match(at, steps, &metric, MatchSplit::Roles, Some(&roles))?;
        matching::merge_best(at, steps, &score, dst)
    }
}
