//! `compact.wgsl`: stable compaction of the flagged rows (a prefix sum per image), carrying each
//! survivor's original token index; the row gather; a plain copy; the packed map of a masked
//! batch's live rows.

use super::{grid_for_groups, grid_for_items, u, MAX_TOKENS};
use crate::error::{Error, Result};
use crate::gpu::kernel::{read, read_u32, write, write_u32, Family, Kernel, Params};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct CompactParams {
        n_in: u32,
        n_out: u32,
    }
}

crate::wgsl_params! {
    pub struct MapParams {
        batch: u32,
        n: u32,
    }
}

crate::wgsl_params! {
    pub struct GatherParams {
        /// batch * n_out * d
        total: u32,
        n_in: u32,
        n_out: u32,
        d: u32,
    }
}

crate::wgsl_params! {
    pub struct CopyParams {
        total: u32,
    }
}

pub static COMPACT: Family = Family {
    name: "compact",
    source: include_str!("../../../shaders/compact.wgsl"),
    libs: &[],
    params: &[
        CompactParams::DECL,
        GatherParams::DECL,
        CopyParams::DECL,
        MapParams::DECL,
    ],
    kernels: &[
        &ROWS.info,
        &GATHER.info,
        &COPY.info,
        &GATHER4.info,
        &COPY4.info,
        &LIVE_MAP.info,
        &COMPACT_GATHER.info,
    ],
};

/// Output rows each `compact_gather` workgroup gathers (compact.wgsl's `CG_ROWS`).
const CG_ROWS: usize = 8;

pub static COMPACT_GATHER: Kernel<GatherParams> = Kernel::new(
    &COMPACT,
    "compact_gather",
    &[
        read_u32("cg_flags"),
        read_u32("cg_orig_in"),
        write_u32("cg_src"),
        write_u32("cg_orig_out"),
        write_u32("cg_count"),
        read("cg_x"),
        write("cg_out"),
    ],
    Phase::Compact,
);

pub static LIVE_MAP: Kernel<MapParams> = Kernel::new(
    &COMPACT,
    "live_row_map",
    &[read_u32("lm_count"), write_u32("lm_map")],
    Phase::Compact,
);

pub static ROWS: Kernel<CompactParams> = Kernel::new(
    &COMPACT,
    "compact",
    &[
        read_u32("cp_flags"),
        read_u32("cp_orig_in"),
        write_u32("cp_src"),
        write_u32("cp_orig_out"),
        write_u32("cp_count"),
    ],
    Phase::Compact,
);

pub static GATHER: Kernel<GatherParams> = Kernel::new(
    &COMPACT,
    "gather_rows",
    &[read("g_x"), read_u32("g_src"), write("g_out")],
    Phase::Compact,
);

pub static COPY: Kernel<CopyParams> = Kernel::new(
    &COMPACT,
    "copy",
    &[read("c_src"), write("c_dst")],
    Phase::Compact,
);

pub static GATHER4: Kernel<GatherParams> = Kernel::new(
    &COMPACT,
    "gather_rows4",
    &[read("g4_x"), read_u32("g4_src"), write("g4_out")],
    Phase::Compact,
);

pub static COPY4: Kernel<CopyParams> = Kernel::new(
    &COMPACT,
    "copy4",
    &[read("c4_src"), write("c4_dst")],
    Phase::Compact,
);

impl Kernels {
    /// The live rows of a masked batch packed in order (image b keeps its first `count[b]` of `n`
    /// rows): `map[0]` live rows, `map[1 + r]` the batch row of packed row `r`. `map` holds
    /// `1 + batch * n` values.
    pub fn live_row_map(
        &self,
        label: &str,
        (batch, n): (usize, usize),
        count: &GpuTensor,
        map: &GpuTensor,
    ) -> Result<Step> {
        if map.len < 1 + batch * n {
            return Err(Error::param(
                "live row map",
                format!("holds {} values, needs {}", map.len, 1 + batch * n),
            ));
        }
        let params = MapParams {
            batch: u(batch, "batch")?,
            n: u(n, "tokens")?,
        };
        self.launch(
            &LIVE_MAP,
            label,
            &[count, map],
            &params,
            grid_for_items(batch * n, 256),
        )
    }

    /// Stable compaction of flagged rows: `src[b, r]` (input row), `orig_out[b, r]` (carried from
    /// `orig_in`), `count[b]`; slots past the count hold `u32::MAX`.
    #[allow(clippy::too_many_arguments)]
    pub fn compact(
        &self,
        label: &str,
        batch: usize,
        (n_in, n_out): (usize, usize),
        flags: &GpuTensor,
        orig_in: &GpuTensor,
        src: &GpuTensor,
        orig_out: &GpuTensor,
        count: &GpuTensor,
    ) -> Result<Step> {
        if n_in > MAX_TOKENS {
            return Err(Error::param(
                "tokens",
                format!("compaction supports at most {MAX_TOKENS} rows"),
            ));
        }
        let params = CompactParams {
            n_in: u(n_in, "tokens")?,
            n_out: u(n_out, "tokens")?,
        };
        self.launch(
            &ROWS,
            label,
            &[flags, orig_in, src, orig_out, count],
            &params,
            grid_for_groups(batch),
        )
    }

    /// [`Kernels::compact`] then [`Kernels::gather_rows`] of `x`'s `d`-wide rows into `out`, in one
    /// dispatch: `d` must be a multiple of 4. Every workgroup redoes its image's scan and gathers 8
    /// output rows, so the rows spread over many workgroups at batch 1.
    #[allow(clippy::too_many_arguments)]
    pub fn compact_gather(
        &self,
        label: &str,
        batch: usize,
        (n_in, n_out, d): (usize, usize, usize),
        (flags, orig_in): (&GpuTensor, &GpuTensor),
        (src, orig_out, count): (&GpuTensor, &GpuTensor, &GpuTensor),
        (x, out): (&GpuTensor, &GpuTensor),
    ) -> Result<Step> {
        if n_in > MAX_TOKENS {
            return Err(Error::param(
                "tokens",
                format!("compaction supports at most {MAX_TOKENS} rows"),
            ));
        }
        if !d.is_multiple_of(4) || batch > super::MAX_GROUPS as usize {
            return Err(Error::param(
                "compact_gather",
                format!(
                    "rows of {d} values in a batch of {batch}: the width must be a multiple of 4"
                ),
            ));
        }
        let params = GatherParams {
            total: u(batch * n_out * d / 4, "rows")?,
            n_in: u(n_in, "tokens")?,
            n_out: u(n_out, "tokens")?,
            d: u(d / 4, "dim")?,
        };
        self.launch(
            &COMPACT_GATHER,
            label,
            &[flags, orig_in, src, orig_out, count, x, out],
            &params,
            [u(n_out.div_ceil(CG_ROWS).max(1), "rows")?, batch as u32, 1],
        )
    }

    /// `out[b, r, :] = x[b, src[b, r], :]` (zero where `src` is `u32::MAX`); on vec4s when `d` is
    /// a multiple of 4.
    pub fn gather_rows(
        &self,
        label: &str,
        batch: usize,
        (n_in, n_out, d): (usize, usize, usize),
        x: &GpuTensor,
        src: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<Step> {
        let (kernel, unit) = if d.is_multiple_of(4) {
            (&GATHER4, 4)
        } else {
            (&GATHER, 1)
        };
        let total = batch * n_out * d / unit;
        let params = GatherParams {
            total: u(total, "rows")?,
            n_in: u(n_in, "tokens")?,
            n_out: u(n_out, "tokens")?,
            d: u(d / unit, "dim")?,
        };
        let grid = grid_for_items(total, 256);
        self.launch(kernel, label, &[x, src, out], &params, grid)
    }

    /// `dst[0..len) = src[0..len)`; on vec4s when `len` is a multiple of 4.
    pub fn copy(&self, label: &str, src: &GpuTensor, dst: &GpuTensor, len: usize) -> Result<Step> {
        let (kernel, unit) = if len.is_multiple_of(4) {
            (&COPY4, 4)
        } else {
            (&COPY, 1)
        };
        let params = CopyParams {
            total: u(len / unit, "copy length")?,
        };
        let grid = grid_for_items(len / unit, 256);
        self.launch(kernel, label, &[src, dst], &params, grid)
    }
}
