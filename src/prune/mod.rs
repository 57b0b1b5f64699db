//! Zero-shot token pruning: policies (what to keep), schedules (where and how much) and the GPU
//! steps that carry them out between a block's attention and its MLP. The algorithms are written out
//! in `docs/pruning.md`; `tests/reference/prune_reference.py` implements the same text independently.

pub mod plan;
pub mod policy;
pub mod request;
pub mod schedule;

mod evit;
mod random;
mod threshold;
mod tome;
mod wpr;
mod zero_tprune;

pub use crate::gpu::prune_kernels::HeadCombine;
pub use plan::PrunePlan;
pub use policy::{Policy, PruneOptions};
pub use request::PruneRequest;
pub use schedule::{Keep, PruneStep, Pruning, ScheduleSpec};
