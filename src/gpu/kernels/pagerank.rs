//! `pagerank.wgsl`: Weighted PageRank per (image, head) on the surviving tokens, and the heads
//! combined into one score per token (mean, RMS, or RMS over the heads in a variance band).

use super::{grid_for_groups, u, TokenShape, MAX_HEADS};
use crate::error::{Error, Result};
use crate::gpu::kernel::{read, read_u32, write, write_u32, Family, Kernel, Params, REDUCE, SORT};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct WprParams {
        n: u32,
        heads: u32,
        iters: u32,
        eps: f32,
    }
}

crate::wgsl_params! {
    pub struct CombineParams {
        n: u32,
        heads: u32,
        prefix: u32,
        /// 0 mean, 1 rms, 2 band.
        mode: u32,
        lo: f32,
        hi: f32,
        /// Rows to flag in `c_flags` by rank (the top-k selection fused in); 0: none.
        keep: u32,
        /// The sort's length: `n` rounded up to a power of two.
        m: u32,
    }
}

pub static PAGERANK: Family = Family {
    name: "pagerank",
    source: include_str!("../../../shaders/pagerank.wgsl"),
    libs: &[REDUCE, SORT],
    params: &[WprParams::DECL, CombineParams::DECL],
    kernels: &[&WPR.info, &COMBINE.info],
};

pub static WPR: Kernel<WprParams> = Kernel::new(
    &PAGERANK,
    "wpr",
    &[
        read("w_probs"),
        read_u32("w_alive"),
        write("w_out"),
        write("w_norm"),
    ],
    Phase::Score,
);

pub static COMBINE: Kernel<CombineParams> = Kernel::new(
    &PAGERANK,
    "combine_heads",
    &[
        read("c_heads"),
        read_u32("c_alive"),
        write("c_score"),
        write_u32("c_flags"),
    ],
    Phase::Score,
);

/// How the per-head PageRank scores become one score per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadCombine {
    Mean,
    Rms,
    /// RMS over the heads whose variance of `|S| * s` (patch tokens) lies in the band.
    #[default]
    Band,
}

impl std::str::FromStr for HeadCombine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(HeadCombine::Mean),
            "rms" => Ok(HeadCombine::Rms),
            "band" => Ok(HeadCombine::Band),
            other => Err(Error::param(
                "heads",
                format!("unknown head combination '{other}'; expected mean, rms or band"),
            )),
        }
    }
}

impl Kernels {
    /// Weighted PageRank per (image, head) on the rows flagged alive: `heads_out[b, h, i]`.
    /// `matrix` is scratch for the renormalised attention, at least [`Kernels::wpr_matrix_len`].
    #[allow(clippy::too_many_arguments)]
    pub fn wpr(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        alive: &GpuTensor,
        heads_out: &GpuTensor,
        matrix: &GpuTensor,
        iters: u32,
        eps: f32,
    ) -> Result<Step> {
        s.check()?;
        let need = Self::wpr_matrix_len(s);
        if matrix.len < need {
            return Err(Error::param(
                "pagerank matrix",
                format!("scratch holds {} values, PageRank needs {need}", matrix.len),
            ));
        }
        let params = WprParams {
            n: s.n_u32()?,
            heads: s.heads_u32()?,
            iters,
            eps,
        };
        let grid = grid_for_groups(s.batch * s.heads);
        self.launch(
            &WPR,
            label,
            &[probs, alive, heads_out, matrix],
            &params,
            grid,
        )
    }

    /// Values in [`Kernels::wpr`]'s scratch: per (image, head), the `n x n` renormalised attention,
    /// transposed, rows padded to a multiple of 4.
    pub fn wpr_matrix_len(s: TokenShape) -> usize {
        s.batch * s.heads * s.n * s.n.div_ceil(4) * 4
    }

    /// One score per alive token from the per-head scores; `-3e38` for the others.
    #[allow(clippy::too_many_arguments)]
    ///
    /// With `topk = Some((flags, keep))`, the same workgroup then flags the `keep` best rows of each
    /// image as [`Kernels::select_topk`] would (prefix rows first): one dispatch for both.
    #[allow(clippy::too_many_arguments)]
    pub fn combine_heads(
        &self,
        label: &str,
        s: TokenShape,
        heads_in: &GpuTensor,
        alive: &GpuTensor,
        score: &GpuTensor,
        how: HeadCombine,
        band: (f32, f32),
        topk: Option<(&GpuTensor, usize)>,
    ) -> Result<Step> {
        if s.heads > MAX_HEADS {
            return Err(Error::param(
                "heads",
                format!("head combining supports at most {MAX_HEADS} heads"),
            ));
        }
        let params = CombineParams {
            n: s.n_u32()?,
            heads: s.heads_u32()?,
            prefix: u(s.prefix, "prefix")?,
            mode: match how {
                HeadCombine::Mean => 0,
                HeadCombine::Rms => 1,
                HeadCombine::Band => 2,
            },
            lo: band.0,
            hi: band.1,
            keep: match topk {
                Some((_, 0)) => {
                    return Err(Error::param(
                        "keep",
                        "a top-k selection keeps at least 1 row",
                    ))
                }
                Some((_, keep)) => u(keep, "keep")?,
                None => 0,
            },
            m: u(s.n.next_power_of_two().max(2), "tokens")?,
        };
        let flags = topk.map_or(&self.dummy, |(f, _)| f);
        let grid = grid_for_groups(s.batch);
        self.launch(
            &COMBINE,
            label,
            &[heads_in, alive, score, flags],
            &params,
            grid,
        )
    }
}
