//! Zero-TPrune-merge with a per-image budget: Zero-TPrune's pre-rank splits the valid patch rows
//! into an important half (by received attention) and candidates; every candidate whose key is
//! within cosine distance THETA (`1 - cos < THETA`) of an important key merges into its most
//! similar survivor (head-averaged keys, size-weighted, proportional attention later). How many
//! merge depends on the image, so rows stay allocated (masked rows) and `--flops` is a mean over
//! calibration data, met by scaling THETA (`Session::calibrate`). A thumbnail of one object loses
//! more tokens than a cluttered photo (docs/pruning.md, "Per-image budgets").

use super::{matching, zero_tprune};
use crate::error::{Error, Result};
use crate::gpu::kernels::ThresholdOn;
use crate::gpu::Step;
use crate::prune::{KeepRule, PolicyDef, PrunePoint, Reads, Selection, Target};

pub struct ZeroTPruneAdaptive;

impl PolicyDef for ZeroTPruneAdaptive {
    fn name(&self) -> &'static str {
        "zero-tprune-adaptive"
    }

    fn help(&self) -> &'static str {
        "zero-tprune-merge with a per-image budget: less-attended tokens whose key is within cosine \
         distance THETA of an attended one merge; --flops is a mean, calibrated on data"
    }

    fn reads(&self) -> Reads {
        Reads::ALL
    }

    fn merges(&self) -> bool {
        true
    }

    fn keep_rule(&self) -> KeepRule {
        KeepRule::Threshold
    }

    /// From a quarter of the depth to the last block (3 to 11 of 12): the blocks that measured
    /// best for merging at a fixed count (`uniform@late`).
    fn default_blocks(&self, depth: usize) -> Vec<usize> {
        (depth / 4..depth).collect()
    }

    /// About 80% of the dense FLOPs on DeiT-Tiny's calibration images, like every other
    /// policy's default (a key cosine of 0.86).
    fn default_threshold(&self) -> f32 {
        0.14
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let Target::Threshold(theta) = at.target else {
            return Err(Error::param(
                "threshold",
                "zero-tprune-adaptive merges by a key distance: give --threshold THETA@BLOCKS \
                 or --flops (calibrated)",
            ));
        };
        let score = zero_tprune::similarity_to_important(at, steps)?;
        // score = -cos for candidates: they stay where 1 - cos >= theta, i.e. -cos >= theta - 1
        // (f32 on both sides, as the reference computes it); the important half scores 3e38.
        let flags = at.work.rows("keep flags");
        steps.push(at.k.select_threshold(
            &at.label("distance_threshold"),
            at.shape,
            &score,
            at.valid,
            &flags,
            ThresholdOn::Score,
            theta - 1.0,
        )?);
        matching::merge_removed(at, steps, flags)
    }
}
