//! WPR-merge: Weighted PageRank chooses the kept tokens (as `wpr`), and every removed token merges
//! into its most similar kept token by head-averaged keys (size-weighted, proportional attention
//! later), so what it carried is not lost.

use super::wpr;
use crate::error::Result;
use crate::gpu::kernels::{Features, MatchSplit};
use crate::gpu::Step;
use crate::prune::{Opt, PolicyDef, PrunePoint, Reads, Selection};

pub struct WprMerge;

impl PolicyDef for WprMerge {
    fn name(&self) -> &'static str {
        "wpr-merge"
    }

    fn help(&self) -> &'static str {
        "Weighted PageRank keeps the top-k; every other token merges into its most similar kept one"
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

    fn options(&self) -> &'static [Opt] {
        &[Opt::Heads, Opt::Iters]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let (k, s) = (at.k, at.shape);
        let dh = at.keys.width / s.heads.max(1);
        let flags = wpr::importance(at, steps, &at.all_rows())?;
        let metric = at.work.per_row("head-mean keys", dh);
        let match_score = at.work.rows("match score");
        let dst = at.work.rows("match destination");
        steps.push(k.head_mean_keys(&at.label("metric"), s, at.keys, &metric)?);
        // Sources: the removed rows (flag 0); destinations: the kept ones (flag 1).
        steps.push(k.best_match(
            &at.label("match"),
            s,
            Features::packed(&metric, s.n, dh),
            MatchSplit::Flags,
            Some(&flags),
            &match_score,
            &dst,
        )?);
        Ok(Selection::Merge { flags, dst })
    }
}
