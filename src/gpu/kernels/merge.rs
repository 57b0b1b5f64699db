//! `merge.wgsl`: size-weighted merging of removed rows into the rows they chose, from the
//! destination side, with the summed sizes (proportional attention reads them later).

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
        read("m_size_in"),
        write("m_out"),
        write("m_size_out"),
    ],
    Phase::Merge,
);

impl Kernels {
    /// Every kept row `t` (input row `src[b, r]`) becomes the size-weighted mean of itself and the
    /// removed rows `a` (`flags[a] == 0`) with `dst[a] == t`; `size_out` gets the summed sizes.
    #[allow(clippy::too_many_arguments)]
    pub fn merge_rows(
        &self,
        label: &str,
        s: TokenShape,
        (n_out, d): (usize, usize),
        x: &GpuTensor,
        src: &GpuTensor,
        flags: &GpuTensor,
        dst: &GpuTensor,
        (size_in, size_out): (&GpuTensor, &GpuTensor),
        out: &GpuTensor,
    ) -> Result<Step> {
        let params = MergeParams {
            batch: s.batch_u32()?,
            n_in: s.n_u32()?,
            n_out: u(n_out, "tokens")?,
            d: u(d, "dim")?,
            prefix: u(s.prefix, "prefix")?,
        };
        self.launch(
            &ROWS,
            label,
            &[x, src, flags, dst, size_in, out, size_out],
            &params,
            grid_for_groups(s.batch * n_out),
        )
    }
}
