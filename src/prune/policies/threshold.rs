//! Threshold pruning (LTP style): drop patch tokens whose received attention, scaled so that uniform
//! attention is 1, is below a per-block threshold. The kept count differs per image, so rows stay
//! allocated (masked rows): the first `count[b]` rows of image `b` are valid and later softmaxes
//! ignore the rest.

use crate::error::Result;
use crate::gpu::kernels::ThresholdOn;
use crate::gpu::Step;
use crate::prune::{KeepRule, PolicyDef, PrunePoint, Reads, Selection, Target};

pub struct Threshold;

impl PolicyDef for Threshold {
    fn name(&self) -> &'static str {
        "threshold"
    }

    fn help(&self) -> &'static str {
        "drop tokens whose received attention is below THETA x uniform; the count differs per image"
    }

    fn reads(&self) -> Reads {
        Reads {
            attention: true,
            ..Reads::default()
        }
    }

    fn keep_rule(&self) -> KeepRule {
        KeepRule::Threshold
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        let Target::Threshold(theta) = at.target else {
            // The schedule gives this policy thresholds only.
            return Err(crate::Error::param(
                "threshold",
                "a threshold step needs THETA",
            ));
        };
        let score = at.work.rows("score");
        let flags = at.work.rows("keep flags");
        steps.push(at.k.received_attention(
            &at.label("received_attention"),
            at.shape,
            at.probs()?,
            at.valid,
            &score,
        )?);
        steps.push(at.k.select_threshold(
            &at.label("threshold"),
            at.shape,
            &score,
            at.valid,
            &flags,
            ThresholdOn::TimesCount,
            theta,
        )?);
        Ok(Selection::Keep { flags })
    }
}
