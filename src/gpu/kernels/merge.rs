//! `merge.wgsl`: size-weighted merging of removed rows into the rows they chose (one each, or
//! several with weights: Token Transforming's spread), from the destination side, with the summed
//! sizes (proportional attention reads them later).

use super::{grid_for_groups, u, TokenShape};
use crate::error::Result;
use crate::gpu::kernel::{read, read_u32, write, Family, Kernel, Params};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct MergeParams {
        batch: u32,
        n_in: u32,
        n_out: u32,
        d: u32,
        prefix: u32,
        /// Destinations per removed row.
        spread: u32,
        /// 1: the weights buffer gives each destination's share; 0: every share is 1.
        weighted: u32,
    }
}

pub static MERGE: Family = Family {
    name: "merge",
    source: include_str!("../../../shaders/merge.wgsl"),
    libs: &[],
    params: &[MergeParams::DECL],
    kernels: &[&ROWS.info],
};

pub static ROWS: Kernel<MergeParams> = Kernel::new(
    &MERGE,
    "merge_rows",
    &[
        read("m_x"),
        read_u32("m_src"),
        read_u32("m_flags"),
        read_u32("m_dst"),
        read("m_weight"),
        read("m_size_in"),
        write("m_out"),
        write("m_size_out"),
    ],
    Phase::Merge,
);

/// Where each removed row goes.
#[derive(Clone, Copy)]
pub enum MergeTargets<'a> {
    /// `[B, n_in]`: one destination row per removed row, all of it.
    One(&'a GpuTensor),
    /// `[B, n_in, k]` destination rows and `[B, n_in, k]` shares (summing to 1 per removed row;
    /// `u32::MAX` and 0 for unused slots): Token Transforming's many-to-many spread.
    Spread {
        dst: &'a GpuTensor,
        weight: &'a GpuTensor,
        k: usize,
    },
}

impl Kernels {
    /// Every kept row `t` (input row `src[b, r]`) becomes the size-weighted mean of itself and the
    /// removed rows `a` (`flags[a] == 0`) that chose it, each weighted by its size times its share
    /// of `t`; `size_out` gets the summed weighted sizes.
    #[allow(clippy::too_many_arguments)]
    pub fn merge_rows(
        &self,
        label: &str,
        s: TokenShape,
        (n_out, d): (usize, usize),
        x: &GpuTensor,
        src: &GpuTensor,
        flags: &GpuTensor,
        targets: MergeTargets,
        (size_in, size_out): (&GpuTensor, &GpuTensor),
        out: &GpuTensor,
    ) -> Result<Step> {
        let (dst, weight, spread, weighted) = match targets {
            MergeTargets::One(dst) => (dst, &self.dummy, 1, 0),
            MergeTargets::Spread { dst, weight, k } => (dst, weight, k, 1),
        };
        let params = MergeParams {
            batch: s.batch_u32()?,
            n_in: s.n_u32()?,
            n_out: u(n_out, "tokens")?,
            d: u(d, "dim")?,
            prefix: u(s.prefix, "prefix")?,
            spread: u(spread, "spread")?,
            weighted,
        };
        self.launch(
            &ROWS,
            label,
            &[x, src, flags, dst, weight, size_in, out, size_out],
            &params,
            grid_for_groups(s.batch * n_out),
        )
    }
}
