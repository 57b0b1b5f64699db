//! Random drop: a seeded hash of (seed, step, image, original token) as the score. The honest
//! baseline of every quality figure.

use crate::error::Result;
use crate::gpu::Step;
use crate::prune::{Opt, PolicyDef, PrunePoint, Selection};

pub struct Random;

impl PolicyDef for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn help(&self) -> &'static str {
        "a seeded random draw per image: the baseline"
    }

    fn options(&self) -> &'static [Opt] {
        &[Opt::Seed]
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let score = at.work.rows("score");
        let flags = at.work.rows("keep flags");
        steps.push(at.k.random_score(
            &at.label("random"),
            at.shape,
            at.orig,
            &score,
            at.options.seed,
            at.index as u32,
        )?);
        steps.push(at.k.select_topk(
            &at.label("topk"),
            at.shape,
            &score,
            &flags,
            at.keep_rows()?,
        )?);
        Ok(Selection::Keep { flags })
    }
}
