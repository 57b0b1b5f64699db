//! `none`: the dense model. A schedule of this policy has no steps, so it never plans one.

use crate::error::{Error, Result};
use crate::gpu::Step;
use crate::prune::{PolicyDef, PrunePoint, Selection};

pub struct Dense;

impl PolicyDef for Dense {
    fn name(&self) -> &'static str {
        "none"
    }

    fn help(&self) -> &'static str {
        "no pruning: the dense model (the default)"
    }

    fn plan(&self, _at: &PrunePoint, _steps: &mut Vec<Step>) -> Result<Selection> {
        Err(Error::param("policy", "policy 'none' has no pruning steps"))
    }
}
