//! PiToMe (Tran et al., NeurIPS 2024): energy-protected token merging. Each patch token's energy
//! is the mean over the patch tokens of `elu(cos - margin)` on head-averaged keys: tokens in dense
//! clusters of similar tokens score high, isolated (informative) ones low. The `2r` highest-energy
//! tokens, in energy order, alternate source and destination; every source merges into its most
//! similar destination (size-weighted, proportional attention later); the others are protected.

use super::matching;
use crate::error::Result;
use crate::gpu::kernels::{MatchSplit, RoleSplit};
use crate::gpu::Step;
use crate::prune::{PolicyDef, PruneOptions, PrunePoint, Reads, Selection, Shape, StepLimit};

pub struct Pitome;

/// PiToMe's margin at block `block` of a `depth`-block model (its DeiT setting: 0.9 falling
/// linearly by 0.8 over the depth), and the ELU's alpha.
pub fn margin(block: usize, depth: usize) -> (f32, f32) {
    (0.9 - 0.8 * block as f32 / depth.max(1) as f32, 1.0)
}

impl PolicyDef for Pitome {
    fn name(&self) -> &'static str {
        "pitome"
    }

    fn help(&self) -> &'static str {
        "energy-protected merging (PiToMe): tokens in dense clusters of similar keys merge, \
         isolated informative ones are protected"
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

    /// `r` sources and `r` destinations come out of the patch tokens: at most half merge.
    fn step_limit(&self, tokens_in: usize, _options: &PruneOptions) -> StepLimit {
        StepLimit {
            max_removed: tokens_in / 2,
            why: Some("PiToMe merges at most half the tokens per step"),
        }
    }

    fn default_blocks(&self, depth: usize) -> Vec<usize> {
        (0..depth).collect()
    }

    /// `--flops`: a late-heavy ramp, else every other block from 2, else a falling ramp: the best
    /// families for its energy ranking on calibration images (docs/pruning.md, "Default schedules").
    fn default_shape(&self) -> Shape {
        Shape(&["late-heavy", "uniform@every-other", "falling"])
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let s = at.shape;
        let r = s.n - at.keep_rows()?;
        let metric = matching::metric(at, steps)?;
        let energy = at.work.rows("energy");
        let roles = at.work.rows("merge roles");
        steps.push(at.k.energy(
            &at.label("energy"),
            s,
            matching::view(at, &metric),
            &energy,
            margin(at.block, at.depth),
        )?);
        steps.push(at.k.split_roles(
            &at.label("energy_pairs"),
            s,
            &energy,
            &roles,
            RoleSplit::RankPairs,
            r,
        )?);
        let (score, dst) =
            matching::best_match(at, steps, &metric, MatchSplit::Roles, Some(&roles))?;
        // Exactly r sources: all of them merge.
        matching::merge_best(at, steps, &score, dst)
    }
}
