//! The kernel families: one Rust module beside each WGSL file (`shaders/`), holding the file's
//! parameter blocks, its kernels (entry points with their buffer slots) and their launchers.
//! Launchers only describe a step; the model and the pruning point decide which run and when.

pub mod attention;
pub mod compact;
pub mod embed;
pub mod gemm;
pub mod layernorm;
pub mod merge;
pub mod pagerank;
pub mod score;
pub mod select;
pub mod similarity;
pub mod softmax;

pub(crate) use super::library::u;
pub use super::library::{with_halves, Variant};
pub use attention::{attention_source, AttentionBias};
pub use gemm::{
    gemm_rb_source, gemm_tiled_source, with_norm, Activation, Gemm, GemmKernel, LiveRows, MatView,
};
pub use layernorm::RowView;
pub use merge::MergeTargets;
pub use pagerank::HeadCombine;
pub use select::{RoleSplit, ThresholdOn, TopCount};
pub use similarity::{Features, MatchSplit};

use super::kernel::Family;
use crate::error::{Error, Result};

/// The most rows per image the one-workgroup kernels (sort, scan, PageRank) handle.
pub const MAX_TOKENS: usize = 1024;

/// The most heads head combining handles.
pub const MAX_HEADS: usize = 64;

/// WebGPU guarantees 65535 workgroups per grid dimension.
pub const MAX_GROUPS: u32 = 65535;

/// Every WGSL family, as the tests validate them.
pub static FAMILIES: &[&Family] = &[
    &gemm::MATMUL,
    &gemm::GEMM_TILED,
    &gemm::GEMM_RB,
    &attention::ATTENTION,
    &softmax::SOFTMAX,
    &layernorm::LAYERNORM,
    &embed::EMBED,
    &score::SCORE,
    &pagerank::PAGERANK,
    &similarity::SIMILARITY,
    &select::SELECT,
    &compact::COMPACT,
    &merge::MERGE,
];

/// Shapes shared by the per-token kernels.
#[derive(Clone, Copy, Debug)]
pub struct TokenShape {
    pub batch: usize,
    /// Rows per image.
    pub n: usize,
    pub heads: usize,
    /// Leading rows that are never pruned (CLS, distillation token).
    pub prefix: usize,
}

impl TokenShape {
    /// The one-workgroup kernels handle at most [`MAX_TOKENS`] rows per image.
    pub fn check(&self) -> Result<()> {
        if self.n > MAX_TOKENS {
            return Err(Error::param(
                "tokens",
                format!(
                    "token pruning supports at most {MAX_TOKENS} tokens per image, the model has {}",
                    self.n
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn batch_u32(&self) -> Result<u32> {
        u(self.batch, "batch")
    }

    pub(crate) fn n_u32(&self) -> Result<u32> {
        u(self.n, "tokens")
    }

    pub(crate) fn heads_u32(&self) -> Result<u32> {
        u(self.heads, "heads")
    }
}

/// A grid of `n` workgroups, spilling into y past the 65535 per-dimension limit.
pub fn grid_for_groups(n: usize) -> [u32; 3] {
    let n = n.max(1) as u32;
    if n <= MAX_GROUPS {
        [n, 1, 1]
    } else {
        [MAX_GROUPS, n.div_ceil(MAX_GROUPS), 1]
    }
}

/// A grid for `items` work items at `per_group` items per workgroup.
pub fn grid_for_items(items: usize, per_group: usize) -> [u32; 3] {
    grid_for_groups(items.div_ceil(per_group))
}
