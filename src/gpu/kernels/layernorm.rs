//! `layernorm.wgsl`: LayerNorm over the last dimension, on rows addressed by (group, row in group).

use super::{grid_for_groups, u};
use crate::error::{Error, Result};
use crate::gpu::kernel::{read, read_u32, write, Family, Kernel, Params, REDUCE};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct LayerNormParams {
        rows: u32, d: u32, group: u32, eps: f32,
        in_off: u32, in_gs: u32, in_rs: u32,
        out_off: u32, out_gs: u32, out_rs: u32,
        /// 1: only the packed live rows of the map bound to `live` (see [`super::LiveRows::Packed`]).
        live_map: u32,
    }
}

pub static LAYERNORM: Family = Family {
    name: "layernorm",
    source: include_str!("../../../shaders/layernorm.wgsl"),
    libs: &[REDUCE],
    params: &[LayerNormParams::DECL],
    kernels: &[&ROWS.info],
};

pub static ROWS: Kernel<LayerNormParams> = Kernel::new(
    &LAYERNORM,
    "layernorm",
    &[
        read("x"),
        read("gamma"),
        read("beta"),
        write("y"),
        read_u32("live"),
    ],
    Phase::Model,
);

/// Rows of a LayerNorm: row r lives at `off + (r / group) * group_stride + (r % group) * row_stride`.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub t: &'a GpuTensor,
    pub off: usize,
    pub group: usize,
    pub group_stride: usize,
    pub row_stride: usize,
    /// Only the live rows of this packed map are normalised (threshold pruning's masked rows are
    /// skipped: [`super::LiveRows::Packed`]); on the input view of consecutive rows.
    pub live: Option<&'a GpuTensor>,
}

impl<'a> RowView<'a> {
    /// Consecutive rows of width `d`.
    pub fn dense(t: &'a GpuTensor, d: usize) -> Self {
        RowView {
            t,
            off: 0,
            group: 1,
            group_stride: d,
            row_stride: d,
            live: None,
        }
    }

    /// The same rows, of which only the live ones (a packed map) are normalised.
    pub fn live(self, live: Option<&'a GpuTensor>) -> Self {
        RowView { live, ..self }
    }
}

impl Kernels {
    /// LayerNorm of `rows` rows of width `d` from `x` into `y`.
    #[allow(clippy::too_many_arguments)]
    pub fn layernorm(
        &self,
        label: &str,
        x: RowView,
        y: RowView,
        rows: usize,
        d: usize,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        eps: f32,
    ) -> Result<Step> {
        if x.group != y.group {
            return Err(Error::param("layernorm", "input and output groups differ"));
        }
        let params = LayerNormParams {
            rows: u(rows, "layernorm rows")?,
            d: u(d, "layernorm width")?,
            group: u(x.group.max(1), "layernorm group")?,
            eps,
            in_off: u(x.off, "offset")?,
            in_gs: u(x.group_stride, "stride")?,
            in_rs: u(x.row_stride, "stride")?,
            out_off: u(y.off, "offset")?,
            out_gs: u(y.group_stride, "stride")?,
            out_rs: u(y.row_stride, "stride")?,
            live_map: x.live.is_some() as u32,
        };
        if x.live.is_some() && (x.group, y.group) != (1, 1) {
            return Err(Error::param(
                "layernorm",
                "live rows need consecutive rows (group 1)",
            ));
        }
        let live = x.live.unwrap_or(&self.dummy);
        self.launch_variant(
            &ROWS,
            self.row_reduce_variant(),
            label,
            &[x.t, gamma, beta, y.t, live],
            &params,
            grid_for_groups(rows),
        )
    }
}
