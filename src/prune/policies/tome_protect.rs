//! ToMe with protection: the top `--protect` share of the patch tokens by Weighted PageRank
//! importance never merge away (they may still receive merges); the rest is ToMe's bipartite
//! matching on head-averaged keys, size-weighted merging and proportional attention.

use super::wpr;
use crate::error::Result;
use crate::gpu::kernels::{Features, MatchSplit, RoleSplit};
use crate::gpu::Step;
use crate::prune::{Opt, PolicyDef, PruneOptions, PrunePoint, Reads, Selection, StepLimit};

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
        Reads {
            attention: true,
            keys: true,
            sizes: true,
        }
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

    fn options(&self) -> &'static [Opt] {
        &[Opt::Protect, Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let (k, s) = (at.k, at.shape);
        let dh = at.keys.width / s.heads.max(1);
        let importance = wpr::importance_scores(at, steps, &at.all_rows())?;
        let roles = at.work.rows("merge roles");
        steps.push(k.split_roles(
            &at.label("protect"),
            s,
            &importance,
            &roles,
            RoleSplit::ParityProtect,
            at.options.protected(s.n - s.prefix),
        )?);
        let metric = at.work.per_row("head-mean keys", dh);
        let match_score = at.work.rows("match score");
        let dst = at.work.rows("match destination");
        let flags = at.work.rows("keep flags");
        steps.push(k.head_mean_keys(&at.label("metric"), s, at.keys, &metric)?);
        steps.push(k.best_match(
            &at.label("match"),
            s,
            Features::packed(&metric, s.n, dh),
            MatchSplit::Roles,
            Some(&roles),
            &match_score,
            &dst,
        )?);
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
