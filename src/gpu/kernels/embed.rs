//! `embed.wgsl`: the patch embedding around one GEMM: `im2col` unfolds images into one row per
//! patch, and `add_prefix_pos` writes the prefix tokens and adds the position embedding.

use super::{grid_for_items, u};
use crate::error::Result;
use crate::gpu::kernel::{read, write, Family, Kernel, Params};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct Im2colParams {
        /// batch * num_patches * cols
        total: u32,
        chans: u32,
        height: u32,
        width: u32,
        psize: u32,
        grid_w: u32,
        num_patches: u32,
        /// chans * patch * patch
        cols: u32,
    }
}

crate::wgsl_params! {
    pub struct PosParams {
        /// batch * tokens * dim
        total: u32,
        tokens: u32,
        dim: u32,
        /// CLS (+ distillation) tokens before the patches.
        prefix: u32,
    }
}

pub static EMBED: Family = Family {
    name: "embed",
    source: include_str!("../../../shaders/embed.wgsl"),
    libs: &[],
    params: &[Im2colParams::DECL, PosParams::DECL],
    kernels: &[&IM2COL.info, &ADD_PREFIX_POS.info],
};

pub static IM2COL: Kernel<Im2colParams> = Kernel::new(
    &EMBED,
    "im2col",
    &[read("image"), write("patches")],
    Phase::Model,
);

pub static ADD_PREFIX_POS: Kernel<PosParams> = Kernel::new(
    &EMBED,
    "add_prefix_pos",
    &[write("x"), read("prefix_tokens"), read("pos")],
    Phase::Model,
);

impl Kernels {
    /// Unfold `[batch, chans, height, width]` images into `[batch * patches, chans * patch^2]` rows.
    #[allow(clippy::too_many_arguments)]
    pub fn im2col(
        &self,
        label: &str,
        image: &GpuTensor,
        patches: &GpuTensor,
        batch: usize,
        chans: usize,
        (height, width): (usize, usize),
        patch: usize,
    ) -> Result<Step> {
        let (gh, gw) = (height / patch, width / patch);
        let cols = chans * patch * patch;
        let total = batch * gh * gw * cols;
        let params = Im2colParams {
            total: u(total, "image batch")?,
            chans: u(chans, "channels")?,
            height: u(height, "height")?,
            width: u(width, "width")?,
            psize: u(patch, "patch")?,
            grid_w: u(gw, "grid")?,
            num_patches: u(gh * gw, "patches")?,
            cols: u(cols, "patch size")?,
        };
        self.launch(
            &IM2COL,
            label,
            &[image, patches],
            &params,
            grid_for_items(total, 256),
        )
    }

    /// Write the prefix tokens (CLS, distillation) and add the position embedding to `x[batch, tokens, dim]`.
    pub fn add_prefix_pos(
        &self,
        label: &str,
        x: &GpuTensor,
        prefix_tokens: &GpuTensor,
        pos: &GpuTensor,
        (batch, tokens, dim, prefix): (usize, usize, usize, usize),
    ) -> Result<Step> {
        let total = batch * tokens * dim;
        let params = PosParams {
            total: u(total, "token buffer")?,
            tokens: u(tokens, "tokens")?,
            dim: u(dim, "dim")?,
            prefix: u(prefix, "prefix")?,
        };
        self.launch(
            &ADD_PREFIX_POS,
            label,
            &[x, prefix_tokens, pos],
            &params,
            grid_for_items(total, 256),
        )
    }
}
