//! Token pruning: every policy against the PyTorch references on images (`prune_reference`) and on
//! text (`text_prune_reference`), the properties every policy has (`prune_invariants`), pruning on
//! text beyond the reference (`text_pruning`), bad pruning input (`prune_errors`), the default
//! schedules (`default_schedules`) and the schedule search (`search`). One test binary, one shared
//! device.

#[path = "../common/mod.rs"]
mod common;

mod default_schedules;
mod prune_errors;
mod prune_invariants;
mod prune_reference;
mod search;
mod text_prune_reference;
mod text_pruning;
