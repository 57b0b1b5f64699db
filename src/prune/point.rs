//! The pruning point as a policy sees it: explicit inputs (views of the attention probabilities,
//! the keys, the token states, sizes, valid rows, original indices), the step's target, the
//! options, and a workspace for scratch buffers; and what a policy returns, a [`Selection`].

use std::cell::RefCell;
use std::collections::HashMap;

use super::options::PruneOptions;
use crate::error::{Error, Result};
use crate::gpu::kernels::{Features, MergeTargets, TokenShape};
use crate::gpu::{GpuContext, GpuTensor, Kernels};

/// How many rows one step keeps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// Exactly this many rows per image, protected rows included.
    Rows(usize),
    /// Patch rows whose received attention, scaled so that uniform is 1, is below this go.
    Threshold(f32),
}

/// Everything one pruning step may read, whatever the model.
pub struct PrunePoint<'a> {
    pub k: &'a Kernels,
    /// Index of the step in the schedule.
    pub index: usize,
    /// The block the step follows (its attention ran; its MLP will run on the survivors).
    pub block: usize,
    /// Blocks in the model (per-block rules such as PageRank's iteration count).
    pub depth: usize,
    /// Batch, rows per image now, heads, and the leading rows that are never pruned.
    pub shape: TokenShape,
    /// `[B, H, n, n]` attention probabilities of the block; present when the policy reads them.
    pub probs: Option<&'a GpuTensor>,
    /// The block's keys, all heads concatenated (`width` = model width).
    pub keys: Features<'a>,
    /// `[B, n, width]` token states.
    pub tokens: &'a GpuTensor,
    /// `[B, n]` sizes of the tokens (how many original tokens each stands for); all 1 before the
    /// first merge.
    pub sizes: &'a GpuTensor,
    /// `[B]` valid rows per image when rows are masked (after a threshold step).
    pub valid: Option<&'a GpuTensor>,
    /// `[B, n]` original token index of every row.
    pub orig: &'a GpuTensor,
    pub target: Target,
    pub options: &'a PruneOptions,
    pub work: &'a Workspace,
}

impl PrunePoint<'_> {
    /// The label of one of the step's kernels, e.g. `block2.prune.pagerank`.
    pub fn label(&self, what: &str) -> String {
        format!("block{}.prune.{what}", self.block)
    }

    /// The attention probabilities (the policy declared that it reads them).
    pub fn probs(&self) -> Result<&GpuTensor> {
        self.probs.ok_or_else(|| {
            Error::Gpu(format!(
                "block {}: the pruning policy reads attention probabilities the model did not keep",
                self.block
            ))
        })
    }

    /// The rows a count target keeps, protected rows included.
    pub fn keep_rows(&self) -> Result<usize> {
        match self.target {
            Target::Rows(r) => Ok(r),
            Target::Threshold(_) => Err(Error::param(
                "policy",
                "this policy keeps a count of tokens; give --keep, --tokens or --flops",
            )),
        }
    }

    /// `[B, n]` flags that mark every row alive.
    pub fn all_rows(&self) -> GpuTensor {
        self.work.filled_u32("all rows", 1)
    }
}

/// Which rows survive a step, as a policy decides it; shared code carries it out.
pub enum Selection {
    /// Rows flagged 1 in `flags` (`[B, n]`) survive, in order; the others are dropped.
    Keep { flags: GpuTensor },
    /// Rows flagged 1 survive; every row flagged 0 merges into row `dst[b, row]` (a survivor),
    /// weighted by the sizes.
    Merge { flags: GpuTensor, dst: GpuTensor },
    /// Rows flagged 1 survive; every row flagged 0 spreads over the `k` survivors
    /// `dst[b, row, ..]` (`[B, n, k]`), each getting the share `weight[b, row, j]` of its size
    /// (Token Transforming).
    Spread {
        flags: GpuTensor,
        dst: GpuTensor,
        weight: GpuTensor,
        k: usize,
    },
}

impl Selection {
    /// The survivors: 1 where a row stays.
    pub fn flags(&self) -> &GpuTensor {
        match self {
            Selection::Keep { flags }
            | Selection::Merge { flags, .. }
            | Selection::Spread { flags, .. } => flags,
        }
    }

    /// Where the removed rows go, if they merge.
    pub fn merge_targets(&self) -> Option<MergeTargets<'_>> {
        match self {
            Selection::Keep { .. } => None,
            Selection::Merge { dst, .. } => Some(MergeTargets::One(dst)),
            Selection::Spread { dst, weight, k, .. } => {
                Some(MergeTargets::Spread { dst, weight, k: *k })
            }
        }
    }
}

/// Scratch buffers of a schedule's steps, by name: a policy asks for what it needs, and steps
/// that ask for the same name share one buffer (they run one after another).
pub struct Workspace {
    gpu: GpuContext,
    batch: usize,
    /// Rows per image before the first step (the most any step sees).
    rows: usize,
    buffers: RefCell<HashMap<(&'static str, usize), GpuTensor>>,
}

impl Workspace {
    pub fn new(gpu: &GpuContext, batch: usize, rows: usize) -> Self {
        Workspace {
            gpu: gpu.clone(),
            batch,
            rows,
            buffers: RefCell::default(),
        }
    }

    /// `[B, rows, per_row]` 4-byte values called `name`, zeroed at creation.
    pub fn per_row(&self, name: &'static str, per_row: usize) -> GpuTensor {
        self.values(name, self.batch * self.rows * per_row)
    }

    /// `len` 4-byte values called `name`, zeroed at creation: scratch a kernel sizes itself.
    pub fn values(&self, name: &'static str, len: usize) -> GpuTensor {
        self.buffers
            .borrow_mut()
            .entry((name, len))
            .or_insert_with(|| GpuTensor::zeros(&self.gpu, name, len))
            .clone()
    }

    /// Rows per image before the first step: the most any step sees.
    pub fn rows_per_image(&self) -> usize {
        self.rows
    }

    /// `[B, rows]` 4-byte values called `name`: a score, flags, an index per row.
    pub fn rows(&self, name: &'static str) -> GpuTensor {
        self.per_row(name, 1)
    }

    /// `[B, rows]` u32 values all equal to `value`.
    pub fn filled_u32(&self, name: &'static str, value: u32) -> GpuTensor {
        let len = self.batch * self.rows;
        self.buffers
            .borrow_mut()
            .entry((name, len))
            .or_insert_with(|| GpuTensor::from_slice(&self.gpu, name, &vec![value; len]))
            .clone()
    }

    /// `[B, rows]` f32 values all equal to `value`.
    pub fn filled_f32(&self, name: &'static str, value: f32) -> GpuTensor {
        let len = self.batch * self.rows;
        self.buffers
            .borrow_mut()
            .entry((name, len))
            .or_insert_with(|| GpuTensor::from_slice(&self.gpu, name, &vec![value; len]))
            .clone()
    }
}
