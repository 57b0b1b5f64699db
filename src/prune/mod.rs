//! Zero-shot token pruning: policies (what to keep), schedules (where and how much) and the GPU
//! steps that carry them out between a block's attention and its MLP. The algorithms are written out
//! in `docs/pruning.md`; `tests/reference/prune_reference.py` implements the same text independently.
//!
//! - [`policy`]: what a policy is ([`PolicyDef`]) and the handle on one ([`Policy`]);
//! - `policies/`: one file per policy, and the registry;
//! - [`point`]: what a policy gets at a pruning point and what it returns ([`Selection`]);
//! - [`plan`]: the buffers of a schedule, and the code that carries selections out;
//! - [`schedule`], [`request`], [`options`]: schedules and options, from the user's words;
//! - [`pruner`]: a request bound to a model, resolved per token geometry (per text length).

pub mod options;
pub mod plan;
pub mod point;
mod policies;
pub mod policy;
pub mod pruner;
pub mod request;
pub mod schedule;
pub mod schedule_file;
pub mod search;

pub use crate::gpu::kernels::HeadCombine;
pub use options::{Opt, PruneOptions};
pub use plan::{PrunePlan, TokenLayout};
pub use point::{PrunePoint, Selection, Target, Workspace};
pub use policy::{
    every_other_block, KeepRule, Policy, PolicyDef, PolicyInfo, Reads, Shape, StepLimit,
    KEEP_RATE_FAMILY,
};
pub use pruner::{parse_thresholds, read_thresholds, Pruner};
pub use request::PruneRequest;
pub use schedule::{Keep, PruneStep, Pruning, ScheduleSpec};
pub use schedule_file::ScheduleFile;
