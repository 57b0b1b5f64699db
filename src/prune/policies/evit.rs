//! EViT: keep the patch tokens the CLS token attends to most (averaged over heads).

use crate::error::{Error, Result};
use crate::gpu::Step;
use crate::prune::{PolicyDef, PrunePoint, Reads, Selection};

pub struct Evit;

impl PolicyDef for Evit {
    fn name(&self) -> &'static str {
        "evit"
    }

    fn help(&self) -> &'static str {
        "keep the tokens CLS attends to most (EViT)"
    }

    fn reads(&self) -> Reads {
        Reads {
            attention: true,
            ..Reads::default()
        }
    }

    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection> {
        if at.shape.prefix == 0 {
            return Err(Error::param(
                "policy",
                "evit scores tokens by the class token's attention, and this model has no class \
                 token: choose another policy",
            ));
        }
        let score = at.work.rows("score");
        let flags = at.work.rows("keep flags");
        steps.push(at.k.cls_attention(
            &at.label("cls_attention"),
            at.shape,
            at.probs()?,
            &score,
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
