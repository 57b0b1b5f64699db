//! `softmax.wgsl`: row softmax in place, with the key-side terms token pruning adds.

use super::{grid_for_groups, u, AttentionBias};
use crate::error::Result;
use crate::gpu::kernel::{read, read_u32, write, Family, Kernel, Params, REDUCE};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct SoftmaxParams {
        rows: u32,
        cols: u32,
        off: u32,
        row_stride: u32,
        /// heads * queries: row r belongs to image r / rows_per_image.
        rows_per_image: u32,
        /// 1: add log(sizes[b, j]) to logit j.
        log_size: u32,
        /// 1: only keys j < counts[b] take part.
        masked: u32,
    }
}

pub static SOFTMAX: Family = Family {
    name: "softmax",
    source: include_str!("../../../shaders/softmax.wgsl"),
    libs: &[REDUCE],
    params: &[SoftmaxParams::DECL],
    kernels: &[&ROWS.info],
};

pub static ROWS: Kernel<SoftmaxParams> = Kernel::new(
    &SOFTMAX,
    "softmax_rows",
    &[write("x"), read("sizes"), read_u32("counts")],
    Phase::Model,
);

impl Kernels {
    /// Softmax over each of `rows` rows of `cols` values, in place.
    pub fn softmax_rows(
        &self,
        label: &str,
        x: &GpuTensor,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Result<Step> {
        self.softmax_biased(
            label,
            x,
            rows,
            cols,
            row_stride,
            1,
            AttentionBias::default(),
        )
    }

    /// Softmax of attention rows with the key-side terms of `bias`; `rows_per_image` = heads * queries.
    #[allow(clippy::too_many_arguments)]
    pub fn softmax_biased(
        &self,
        label: &str,
        x: &GpuTensor,
        rows: usize,
        cols: usize,
        row_stride: usize,
        rows_per_image: usize,
        bias: AttentionBias,
    ) -> Result<Step> {
        let params = SoftmaxParams {
            rows: u(rows, "softmax rows")?,
            cols: u(cols, "softmax cols")?,
            off: 0,
            row_stride: u(row_stride, "softmax stride")?,
            rows_per_image: u(rows_per_image, "softmax rows per image")?,
            log_size: bias.log_size.is_some() as u32,
            masked: bias.valid.is_some() as u32,
        };
        let sizes = bias.log_size.unwrap_or(&self.dummy);
        let counts = bias.valid.unwrap_or(&self.dummy);
        self.launch_variant(
            &ROWS,
            self.row_reduce_variant(),
            label,
            &[x, sizes, counts],
            &params,
            grid_for_groups(rows),
        )
    }
}
