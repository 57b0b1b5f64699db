//! `attention.wgsl`: fused attention, `softmax(Q K^T * scale + key bias) V`, for blocks whose
//! probabilities nobody reads. A template: the host sets the head dimension.

use super::{u, Variant, MAX_GROUPS};
use crate::error::{Error, Result};
use crate::gpu::kernel::{read, read_u32, write, Family, Kernel, Params};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct AttentionParams {
        /// Tokens (rows) per image.
        n: u32,
        /// Model width: qkv rows are 3d, output rows d.
        d: u32,
        /// 1: add log(sizes[b, j]) to logit j (ToMe's proportional attention).
        log_size: u32,
        /// 1: only keys j < counts[b] take part.
        masked: u32,
        scale: f32,
    }
}

pub static ATTENTION: Family = Family {
    name: "attention",
    source: include_str!("../../../shaders/attention.wgsl"),
    libs: &[],
    params: &[AttentionParams::DECL],
    kernels: &[&FUSED.info],
};

pub static FUSED: Kernel<AttentionParams> = Kernel::new(
    &ATTENTION,
    "attention",
    &[read("qkv"), read("sizes"), read_u32("counts"), write("out")],
    Phase::Model,
);

/// The complete WGSL of the fused attention for heads of `dh` values (a multiple of 4).
pub fn attention_source(dh: usize) -> String {
    ATTENTION.wgsl_with(&ATTENTION.source.replace(
        "const DH4: u32 = 16u;",
        &format!("const DH4: u32 = {}u;", dh / 4),
    ))
}

/// Key-side terms of an attention softmax, set by token pruning (and padding, for text).
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionBias<'a> {
    /// `[B, n]` token sizes: `log(size[j])` is added to the logit of key `j` (proportional attention).
    pub log_size: Option<&'a GpuTensor>,
    /// `[B]` valid rows per image: keys past it get probability 0 (masked rows).
    pub valid: Option<&'a GpuTensor>,
}

impl Kernels {
    /// Whether [`Kernels::attention`] handles these shapes: head dim and width multiples of 4 and
    /// the qkv buffer bindable as vec4s.
    pub fn attention_fits(d: usize, heads: usize) -> bool {
        heads > 0 && d.is_multiple_of(heads) && (d / heads).is_multiple_of(4) && d / heads <= 256
    }

    /// Fused attention `out[b, i, h] = softmax(Q K^T * scale + bias) V` over `qkv[B, n, 3d]` into
    /// `out[B, n, d]`, without writing the probabilities.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &self,
        label: &str,
        qkv: &GpuTensor,
        out: &GpuTensor,
        (batch, n, d, heads): (usize, usize, usize, usize),
        scale: f32,
        bias: AttentionBias,
    ) -> Result<Step> {
        if !Self::attention_fits(d, heads) || n == 0 {
            return Err(Error::param(
                "attention",
                format!("width {d} with {heads} heads needs a head dim that is a multiple of 4"),
            ));
        }
        if qkv.len < batch * n * 3 * d || out.len < batch * n * d {
            return Err(Error::param("attention", "buffers too small for the shape"));
        }
        let params = AttentionParams {
            n: u(n, "tokens")?,
            d: u(d, "width")?,
            log_size: bias.log_size.is_some() as u32,
            masked: bias.valid.is_some() as u32,
            scale,
        };
        const WG: usize = 32;
        let groups = n.div_ceil(WG);
        if groups > MAX_GROUPS as usize
            || heads > MAX_GROUPS as usize
            || batch > MAX_GROUPS as usize
        {
            return Err(Error::param(
                "attention",
                "shape exceeds the dispatch limit",
            ));
        }
        let sizes = bias.log_size.unwrap_or(&self.dummy);
        let counts = bias.valid.unwrap_or(&self.dummy);
        self.launch_variant(
            &FUSED,
            Variant::Attention {
                head_dim: u(d / heads, "head dim")?,
            },
            label,
            &[qkv, sizes, counts, out],
            &params,
            [groups as u32, heads as u32, batch as u32],
        )
    }
}
