//! PiToMe (Tran et al., NeurIPS 2024): energy-protected token merging. Each patch token's energy
//! is the mean over the patch tokens of `elu(cos - margin)` on head-averaged keys: tokens in dense
//! clusters of similar tokens score high, isolated (informative) ones low. The `2r` highest-energy
//! tokens, in energy order, alternate source and destination; every source merges into its most
//! similar destination (size-weighted, proportional attention later); the others are protected.

use crate::error::Result;
use crate::gpu::kernels::{Features, MatchSplit, RoleSplit};
use crate::gpu::Step;
use crate::prune::{PolicyDef, PruneOptions, PrunePoint, Reads, Selection, StepLimit};

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

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let (k, s) = (at.k, at.shape);
        let dh = at.keys.width / s.heads.max(1);
        let r = s.n - at.keep_rows()?;
        let metric = at.work.per_row("head-mean keys", dh);
        let metric_view = Features::packed(&metric, s.n, dh);
        let energy = at.work.rows("energy");
        let roles = at.work.rows("merge roles");
        let match_score = at.work.rows("match score");
        let dst = at.work.rows("match destination");
        let flags = at.work.rows("keep flags");
        steps.push(k.head_mean_keys(&at.label("metric"), s, at.keys, &metric)?);
        steps.push(k.energy(
            &at.label("energy"),
            s,
            metric_view,
            &energy,
            margin(at.block, at.depth),
        )?);
        steps.push(k.split_roles(
            &at.label("energy_pairs"),
            s,
            &energy,
            &roles,
            RoleSplit::RankPairs,
            r,
        )?);
        steps.push(k.best_match(
            &at.label("match"),
            s,
            metric_view,
            MatchSplit::Roles,
            Some(&roles),
            &match_score,
            &dst,
        )?);
        // Exactly r sources: all of them merge.
        steps.push(k.select_topk(
            &at.label("merge_select"),
            s,
            &match_score,
            &flags,
            at.keep_rows()?,
        )?);
        Ok(Selection::Merge { flags, dst })
    }
}
