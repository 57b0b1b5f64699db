//! The GEMM kernels, each with the epilogue of `gemm_common.wgsl`: `matmul.wgsl` (the naive
//! baseline), `gemm_tiled.wgsl` (workgroup-memory tiles for GPUs, 64x64 or 128x128) and
//! `gemm_rb.wgsl` (register-blocked, no workgroup memory, for CPU adapters; a template the host
//! specialises per tile and load width). One batched, strided interface serves the linear layers,
//! Q.K^T and P.V per head, and the head; which kernel runs is measured per adapter and size.

use super::{u, Variant, MAX_GROUPS};
use crate::error::{Error, Result};
use crate::gpu::kernel::{read, read_u32, write, Family, Kernel, Params};
use crate::gpu::{GemmWork, GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    /// Shapes and views of `C = alpha * A.B` over `outer * heads` matrices (see [`MatView`]).
    pub struct GemmParams {
        m: u32, n: u32, k: u32, heads: u32,
        a_off: u32, a_rs: u32, a_ks: u32, a_zo: u32, a_zi: u32,
        b_off: u32, b_ks: u32, b_ns: u32, b_zo: u32, b_zi: u32,
        c_off: u32, c_rs: u32, c_zo: u32, c_zi: u32,
        bias_off: u32, alpha: f32,
        /// Bits: 1 add the bias, 2 GELU, 4 accumulate into C, 8 add `residual` (gemm_common.wgsl).
        epilogue: u32,
        /// 0: every row is live; 1: one matrix per image and head, its image's count of live rows
        /// (and keys, in the columns with `live_cols` or the sum with `live_k`); 2: packed rows
        /// through a map. See [`LiveRows`] and gemm_common.wgsl.
        live_mode: u32,
        live_cols: u32,
        live_k: u32,
        /// The folded LayerNorm's epsilon (the NORM variant; see [`Gemm::norm`]).
        norm_eps: f32,
    }
}

const SLOTS: &[crate::gpu::kernel::Slot] = &[
    read("a"),
    read("b"),
    read("bias"),
    write("c"),
    read_u32("live"),
    read("residual"),
];

pub static MATMUL: Family = Family {
    name: "matmul",
    source: concat!(
        include_str!("../../../shaders/matmul.wgsl"),
        include_str!("../../../shaders/gemm_common.wgsl")
    ),
    libs: &[],
    params: &[GemmParams::DECL],
    kernels: &[&NAIVE.info],
};

/// One invocation per output: the baseline.
pub static NAIVE: Kernel<GemmParams> = Kernel::new(&MATMUL, "gemm_naive", SLOTS, Phase::Model);

/// The tiled template as written (64x64 tiles): a complete shader.
pub static GEMM_TILED: Family = Family {
    name: "gemm_tiled",
    source: concat!(
        include_str!("../../../shaders/gemm_tiled.wgsl"),
        include_str!("../../../shaders/gemm_common.wgsl")
    ),
    libs: &[],
    params: &[GemmParams::DECL],
    kernels: &[&TILED.info],
};

/// Tiles of C through workgroup memory, 16x16 invocations of 4x4 (or 8x8) outputs each.
pub static TILED: Kernel<GemmParams> = Kernel::new(&GEMM_TILED, "gemm_tiled", SLOTS, Phase::Model);

/// The complete WGSL of the tiled GEMM with 64x64 tiles (4x4 per invocation, 16 k per slice) or,
/// `wide`, 128x128 tiles (8x8 per invocation, 8 k per slice).
pub fn gemm_tiled_source(wide: bool) -> String {
    if !wide {
        return GEMM_TILED.wgsl();
    }
    let body = GEMM_TILED
        .source
        .replace("const WIDE: bool = false;", "const WIDE: bool = true;")
        .replace("const BM: u32 = 64u;", "const BM: u32 = 128u;")
        .replace("const BN: u32 = 64u;", "const BN: u32 = 128u;")
        .replace("const BK: u32 = 16u;", "const BK: u32 = 8u;");
    GEMM_TILED.wgsl_with(&body)
}

/// The register-blocked template as written (4x4 tile, scalar loads): a complete shader.
pub static GEMM_RB: Family = Family {
    name: "gemm_rb",
    source: concat!(
        include_str!("../../../shaders/gemm_rb.wgsl"),
        include_str!("../../../shaders/gemm_common.wgsl")
    ),
    libs: &[],
    params: &[GemmParams::DECL],
    kernels: &[&BLOCKED.info],
};

pub static BLOCKED: Kernel<GemmParams> = Kernel::new(&GEMM_RB, "gemm_rb", SLOTS, Phase::Model);

/// The vec4 load blocks spliced into the template where a view is aligned for them.
pub(crate) const GEMM_RB_VEC4: &str = include_str!("../../../shaders/gemm_rb_vec4.wgsl");

/// The text between `// @{tag}-begin` and `// @{tag}-end`, markers included.
fn section<'s>(src: &'s str, tag: &str) -> &'s str {
    let begin = src.find(&format!("// @{tag}-begin")).unwrap_or(0);
    let end_tag = format!("// @{tag}-end");
    let end = src.find(&end_tag).map_or(src.len(), |e| e + end_tag.len());
    &src[begin..end]
}

/// The complete WGSL of one register-blocked variant: `tm` rows x `4 * tn4` columns per
/// invocation, A and B read as vec4 or as scalars.
pub fn gemm_rb_source(tm: u32, tn4: u32, a_vec4: bool, b_vec4: bool) -> String {
    let mut body = GEMM_RB
        .source
        .replace("const TM: u32 = 4u;", &format!("const TM: u32 = {tm}u;"))
        .replace("const TN4: u32 = 1u;", &format!("const TN4: u32 = {tn4}u;"));
    for (tag, vec4) in [("a", a_vec4), ("b", b_vec4)] {
        if vec4 {
            let scalar = section(GEMM_RB.source, tag).to_string();
            body = body.replace(&scalar, section(GEMM_RB_VEC4, tag));
        }
    }
    GEMM_RB.wgsl_with(&body)
}

/// `source` with gemm_common.wgsl's LayerNorm fold switched on (`norm`) or as written.
pub fn with_norm(source: String, norm: bool) -> String {
    if norm {
        source.replace("const NORM: bool = false;", "const NORM: bool = true;")
    } else {
        source
    }
}

/// Which GEMM kernel runs a [`Gemm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GemmKernel {
    /// One invocation per output (the baseline).
    Naive,
    /// Tiles through workgroup memory, 16x16 invocations of `tm` x `tm` outputs each (`tm` 4:
    /// 64x64 tiles; 8: 128x128).
    Tiled { tm: u32 },
    /// Register-blocked, no workgroup memory: `tm` rows x `4 * tn4` columns per invocation, vec4
    /// loads where the views allow them.
    Blocked { tm: u32, tn4: u32 },
}

impl GemmKernel {
    /// The candidates [`Kernels::tune_gemm`] measures.
    pub const CANDIDATES: &'static [GemmKernel] = &[
        GemmKernel::Naive,
        GemmKernel::Tiled { tm: 4 },
        GemmKernel::Tiled { tm: 8 },
        GemmKernel::Blocked { tm: 4, tn4: 2 },
        GemmKernel::Blocked { tm: 2, tn4: 4 },
        GemmKernel::Blocked { tm: 4, tn4: 4 },
    ];

    pub fn name(&self) -> String {
        match self {
            GemmKernel::Naive => "naive".into(),
            GemmKernel::Tiled { tm } => format!("tiled{}", 16 * tm),
            GemmKernel::Blocked { tm, tn4 } => format!("blocked{tm}x{}", 4 * tn4),
        }
    }

    /// Rows of C one workgroup computes: row counts that are multiples of it fill every tile.
    pub fn tile_rows(&self) -> usize {
        self.tile().0
    }

    /// Whether the kernel is a candidate for small products (at most 64 rows per tile): those are
    /// a few images' rows, which pruning shortens, and a larger tile would spend most of its last
    /// row of tiles on nothing (a GPU also wants many small tiles there to keep busy).
    pub fn fits_small_products(&self) -> bool {
        self.tile_rows() <= 64
    }

    /// Rows x columns of C one workgroup computes.
    fn tile(&self) -> (usize, usize) {
        match *self {
            GemmKernel::Naive => (16, 16),
            GemmKernel::Tiled { tm } => (16 * tm as usize, 16 * tm as usize),
            GemmKernel::Blocked { tm, tn4 } => (16 * tm as usize, 4 * tn4 as usize),
        }
    }
}

impl std::fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A view of a matrix inside a buffer: element (z, row, col) is at
/// `off + outer * z_outer + inner * z_inner + row * row_stride + col * col_stride`, z = outer * heads + inner.
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a> {
    pub t: &'a GpuTensor,
    pub off: usize,
    pub row_stride: usize,
    pub col_stride: usize,
    pub z_outer: usize,
    pub z_inner: usize,
}

impl<'a> MatView<'a> {
    /// A plain row-major matrix with `cols` columns at the start of `t`.
    pub fn rows(t: &'a GpuTensor, cols: usize) -> Self {
        MatView {
            t,
            off: 0,
            row_stride: cols,
            col_stride: 1,
            z_outer: 0,
            z_inner: 0,
        }
    }
    pub fn at(self, off: usize) -> Self {
        MatView { off, ..self }
    }
    pub fn strides(self, row_stride: usize, col_stride: usize) -> Self {
        MatView {
            row_stride,
            col_stride,
            ..self
        }
    }
    pub fn batched(self, z_outer: usize, z_inner: usize) -> Self {
        MatView {
            z_outer,
            z_inner,
            ..self
        }
    }

    /// Whether the view can be read as aligned vec4s along its columns.
    fn vec4_along_columns(&self) -> bool {
        self.col_stride == 1
            && [
                self.off,
                self.row_stride,
                self.z_outer,
                self.z_inner,
                self.t.len,
            ]
            .iter()
            .all(|v| v.is_multiple_of(4))
            && self.t.len >= 4
    }
}

/// Shape and epilogue of a GEMM: `C = alpha * A.B (+ bias) (GELU) (+ C)` over `outer * heads` matrices.
/// The activation a GEMM applies to its result, after the bias: the MLP's first layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    None,
    /// The exact GELU, `x * Phi(x)` (timm, transformers' `gelu`).
    Gelu,
    /// `x * sigmoid(1.702 x)` (OpenAI's CLIP, transformers' `quick_gelu`).
    QuickGelu,
    /// The tanh approximation of GELU (SigLIP, transformers' `gelu_pytorch_tanh`).
    GeluTanh,
}

#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub outer: usize,
    pub heads: usize,
    pub alpha: f32,
    pub bias: Option<&'a GpuTensor>,
    pub activation: Activation,
    pub accumulate: bool,
    /// Use the textbook kernel (benchmarks and tests only).
    pub naive: bool,
    /// Force a kernel (benchmarks and tests); `None`: the library's choice for this adapter.
    pub kernel: Option<GemmKernel>,
    /// Only the first `counts[item]` rows of every item are computed (threshold pruning's masked
    /// rows): see [`LiveRows`].
    pub live: Option<LiveRows<'a>>,
    /// A LayerNorm folded in, with this epsilon: A is the raw input, B holds diag(gamma) W, and
    /// the bias buffer holds b + beta.W followed by the column sums of diag(gamma) W
    /// ([`crate::model::layers::NormLinear`] prepares them). One dispatch instead of two.
    pub norm: Option<f32>,
    /// Add this buffer, laid out like C, to the result (the residual stream where it is not C).
    pub residual: Option<&'a GpuTensor>,
}

/// The live rows of a batch after threshold pruning, which kernels given them compute alone
/// (nothing reads the others): each image keeps its first `counts[i]` rows.
#[derive(Clone, Copy, Debug)]
pub enum LiveRows<'a> {
    /// One matrix per image and head (attention): matrix z belongs to image `z / heads`, whose
    /// first `counts[z / heads]` rows (queries) are live. Where the image's tokens also index the
    /// columns (`key_cols`: the scores Q.K^T) or the sum (`key_sum`: the context P.V), only the live
    /// ones are computed or summed.
    PerImage {
        counts: &'a GpuTensor,
        key_cols: bool,
        key_sum: bool,
    },
    /// Packed rows (linear layers over the whole batch): `map[0]` rows are live and row `r` stands
    /// for row `map[1 + r]` of A and C (`Kernels::live_row_map`), so the live rows of all images
    /// are contiguous and whole tiles past them are skipped.
    Packed { map: &'a GpuTensor },
}

impl<'a> LiveRows<'a> {
    /// `(live_mode, live_cols, live_k, buffer)` as the kernels take them.
    fn params(live: Option<Self>) -> (u32, u32, u32, Option<&'a GpuTensor>) {
        match live {
            None => (0, 0, 0, None),
            Some(LiveRows::PerImage {
                counts,
                key_cols,
                key_sum,
            }) => (1, key_cols as u32, key_sum as u32, Some(counts)),
            Some(LiveRows::Packed { map }) => (2, 0, 0, Some(map)),
        }
    }
}

impl Gemm<'_> {
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            outer: 1,
            heads: 1,
            alpha: 1.0,
            bias: None,
            activation: Activation::None,
            accumulate: false,
            naive: false,
            kernel: None,
            live: None,
            norm: None,
            residual: None,
        }
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.outer * self.heads) as f64
    }
}

impl Kernels {
    /// `C = alpha * A.B (+ bias) (GELU) (+ C)`; C's columns must be contiguous.
    pub fn gemm(&self, label: &str, a: MatView, b: MatView, c: MatView, g: Gemm) -> Result<Step> {
        if c.col_stride != 1 {
            return Err(Error::param("gemm output", "columns must be contiguous"));
        }
        let (live_mode, live_cols, live_k, live) = LiveRows::params(g.live);
        let params = GemmParams {
            m: u(g.m, "gemm m")?,
            n: u(g.n, "gemm n")?,
            k: u(g.k, "gemm k")?,
            heads: u(g.heads.max(1), "gemm heads")?,
            a_off: u(a.off, "offset")?,
            a_rs: u(a.row_stride, "stride")?,
            a_ks: u(a.col_stride, "stride")?,
            a_zo: u(a.z_outer, "stride")?,
            a_zi: u(a.z_inner, "stride")?,
            b_off: u(b.off, "offset")?,
            b_ks: u(b.row_stride, "stride")?,
            b_ns: u(b.col_stride, "stride")?,
            b_zo: u(b.z_outer, "stride")?,
            b_zi: u(b.z_inner, "stride")?,
            c_off: u(c.off, "offset")?,
            c_rs: u(c.row_stride, "stride")?,
            c_zo: u(c.z_outer, "stride")?,
            c_zi: u(c.z_inner, "stride")?,
            bias_off: 0,
            alpha: g.alpha,
            epilogue: g.bias.is_some() as u32
                | ((g.activation == Activation::Gelu) as u32) << 1
                | (g.accumulate as u32) << 2
                | (g.residual.is_some() as u32) << 3
                | ((g.activation == Activation::QuickGelu) as u32) << 4
                | ((g.activation == Activation::GeluTanh) as u32) << 5,
            live_mode,
            live_cols,
            live_k,
            norm_eps: g.norm.unwrap_or(0.0),
        };
        let norm = g.norm.is_some();
        if norm {
            let need = 2 * g.n;
            if g.bias.is_none_or(|b| b.len < need)
                || g.live
                    .is_some_and(|l| !matches!(l, LiveRows::Packed { .. }))
            {
                return Err(Error::param(
                    "gemm norm",
                    format!("a folded LayerNorm needs a bias buffer of {need} values (bias, then column sums) and whole rows"),
                ));
            }
        }
        let z = u(g.outer * g.heads.max(1), "gemm batch")?;
        let kernel = match (g.naive, g.kernel) {
            (true, _) => GemmKernel::Naive,
            (false, Some(k)) => k,
            (false, None) => self.gemm_kernel_for(g.m * g.n * g.outer * g.heads.max(1)),
        };
        let (tile_m, tile_n) = kernel.tile();
        let mut groups = [g.n.div_ceil(tile_n), g.m.div_ceil(tile_m)];
        // Over packed live rows the tiled kernels take the row tiles along x (tile_ids in
        // gemm_common.wgsl), so that the dead ones spread over every part of the grid.
        if live_mode == 2 && kernel != GemmKernel::Naive {
            groups.swap(0, 1);
        }
        if groups.iter().any(|&v| v > MAX_GROUPS as usize) || z > MAX_GROUPS {
            return Err(Error::param(
                "gemm shape",
                format!(
                    "{}x{}x{} batch {z} exceeds the dispatch limit",
                    g.m, g.n, g.k
                ),
            ));
        }
        let (entry, variant) = match kernel {
            GemmKernel::Naive => (&NAIVE, Variant::GemmNaive { norm }),
            GemmKernel::Tiled { tm } => (
                &TILED,
                Variant::GemmTiled {
                    wide: tm == 8,
                    norm,
                },
            ),
            GemmKernel::Blocked { tm, tn4 } => (
                &BLOCKED,
                Variant::GemmBlocked {
                    tm,
                    tn4,
                    a_vec4: a.vec4_along_columns(),
                    b_vec4: b.vec4_along_columns() && g.n.is_multiple_of(4),
                    norm,
                },
            ),
        };
        let bias = g.bias.unwrap_or(&self.dummy);
        let live = live.unwrap_or(&self.dummy);
        let residual = g.residual.unwrap_or(&self.dummy);
        if g.residual.is_some_and(|r| r.len < c.t.len) {
            return Err(Error::param(
                "gemm residual",
                "the residual buffer must be laid out like C",
            ));
        }
        let mut step = self.launch_variant(
            entry,
            variant,
            label,
            &[a.t, b.t, bias, c.t, live, residual],
            &params,
            [groups[0] as u32, groups[1] as u32, z],
        )?;
        step.gemm = Some(GemmWork {
            flops: g.flops(),
            kernel,
            outputs: g.m * g.n * z as usize,
        });
        Ok(step)
    }
}
