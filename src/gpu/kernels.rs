//! The kernel library: WGSL sources, compiled pipelines (each compiled once) and typed launchers that
//! turn a kernel call into a [`Step`]. Launchers only describe work; the caller decides the order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::{GpuContext, GpuTensor, Step};
use crate::error::{Error, Result};

/// Every WGSL file of the crate, by name.
pub const SHADERS: &[(&str, &str)] = &[
    (
        "matmul",
        concat!(
            include_str!("../../shaders/matmul.wgsl"),
            include_str!("../../shaders/gemm_common.wgsl")
        ),
    ),
    ("softmax", include_str!("../../shaders/softmax.wgsl")),
    ("layernorm", include_str!("../../shaders/layernorm.wgsl")),
    ("embed", include_str!("../../shaders/embed.wgsl")),
    ("score", include_str!("../../shaders/score.wgsl")),
    ("pagerank", include_str!("../../shaders/pagerank.wgsl")),
    ("similarity", include_str!("../../shaders/similarity.wgsl")),
    ("select", include_str!("../../shaders/select.wgsl")),
    ("compact", include_str!("../../shaders/compact.wgsl")),
    ("merge", include_str!("../../shaders/merge.wgsl")),
];

/// The register-blocked GEMM template (with gemm_common.wgsl appended, a complete shader: 4x4 tile, scalar loads) and its
/// vec4 load blocks. Kept out of [`SHADERS`], whose entry-point list the kernel tests pin; every
/// variant the host generates is validated by `tests/gemm.rs` with the same rules.
pub const GEMM_RB: &str = concat!(
    include_str!("../../shaders/gemm_rb.wgsl"),
    include_str!("../../shaders/gemm_common.wgsl")
);
pub const GEMM_RB_VEC4: &str = include_str!("../../shaders/gemm_rb_vec4.wgsl");

/// The text between `// @{tag}-begin` and `// @{tag}-end`, markers included.
fn section<'s>(src: &'s str, tag: &str) -> &'s str {
    let begin = src.find(&format!("// @{tag}-begin")).unwrap_or(0);
    let end_tag = format!("// @{tag}-end");
    let end = src.find(&end_tag).map_or(src.len(), |e| e + end_tag.len());
    &src[begin..end]
}

/// WGSL of one register-blocked GEMM variant: `tm` rows x `4 * tn4` columns per invocation, A and
/// B read as vec4 or as scalars.
pub fn gemm_rb_source(tm: u32, tn4: u32, a_vec4: bool, b_vec4: bool) -> String {
    let mut src = GEMM_RB
        .replace("const TM: u32 = 4u;", &format!("const TM: u32 = {tm}u;"))
        .replace("const TN4: u32 = 1u;", &format!("const TN4: u32 = {tn4}u;"));
    for (tag, vec4) in [("a", a_vec4), ("b", b_vec4)] {
        if vec4 {
            let scalar = section(GEMM_RB, tag).to_string();
            src = src.replace(&scalar, section(GEMM_RB_VEC4, tag));
        }
    }
    src
}

/// The fused attention template (head dim 64 as written); see [`attention_source`].
pub const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");

/// WGSL of the fused attention for heads of `dh` values (a multiple of 4).
pub fn attention_source(dh: usize) -> String {
    ATTENTION.replace(
        "const DH4: u32 = 16u;",
        &format!("const DH4: u32 = {}u;", dh / 4),
    )
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AttentionParams {
    n: u32,
    d: u32,
    log_size: u32,
    masked: u32,
    scale: f32,
    _pad: [u32; 3],
}

/// Which GEMM kernel runs a [`Gemm`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKernel {
    /// One invocation per output (the baseline).
    Naive,
    /// 64x64 tiles through workgroup memory, 4x4 outputs per invocation, scalar loads.
    Tiled,
    /// Register-blocked, no workgroup memory: `tm` rows x `4 * tn4` columns per invocation, vec4
    /// loads where the views allow them.
    Blocked { tm: u32, tn4: u32 },
}

impl GemmKernel {
    /// The candidates [`Kernels::tune_gemm_blocking`] measures.
    pub const CANDIDATES: &'static [GemmKernel] = &[
        GemmKernel::Tiled,
        GemmKernel::Blocked { tm: 4, tn4: 2 },
        GemmKernel::Blocked { tm: 2, tn4: 4 },
        GemmKernel::Blocked { tm: 4, tn4: 4 },
    ];

    pub fn name(&self) -> String {
        match self {
            GemmKernel::Naive => "naive".into(),
            GemmKernel::Tiled => "tiled64".into(),
            GemmKernel::Blocked { tm, tn4 } => format!("blocked{tm}x{}", 4 * tn4),
        }
    }
}

impl std::fmt::Display for GemmKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// WebGPU guarantees 65535 workgroups per grid dimension.
const MAX_GROUPS: u32 = 65535;

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
}

/// Shape and epilogue of a GEMM: `C = alpha * A.B (+ bias) (GELU) (+ C)` over `outer * heads` matrices.
#[derive(Clone, Copy, Debug)]
pub struct Gemm<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub outer: usize,
    pub heads: usize,
    pub alpha: f32,
    pub bias: Option<&'a GpuTensor>,
    pub gelu: bool,
    pub accumulate: bool,
    /// Use the textbook kernel (benchmarks and tests only).
    pub naive: bool,
    /// Force a kernel (benchmarks and tests); `None`: the library's choice for this adapter.
    pub kernel: Option<GemmKernel>,
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
            gelu: false,
            accumulate: false,
            naive: false,
            kernel: None,
        }
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k * self.outer * self.heads) as f64
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemmParams {
    m: u32,
    n: u32,
    k: u32,
    heads: u32,
    a_off: u32,
    a_rs: u32,
    a_ks: u32,
    a_zo: u32,
    a_zi: u32,
    b_off: u32,
    b_ks: u32,
    b_ns: u32,
    b_zo: u32,
    b_zi: u32,
    c_off: u32,
    c_rs: u32,
    c_zo: u32,
    c_zi: u32,
    bias_off: u32,
    alpha: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SoftmaxParams {
    rows: u32,
    cols: u32,
    off: u32,
    row_stride: u32,
    rows_per_image: u32,
    log_size: u32,
    masked: u32,
    _pad: u32,
}

/// Key-side terms of an attention softmax, set by token pruning.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttentionBias<'a> {
    /// `[B, n]` token sizes: `log(size[j])` is added to the logit of key `j` (ToMe's proportional attention).
    pub log_size: Option<&'a GpuTensor>,
    /// `[B]` valid rows per image: keys past it get probability 0 (masked rows after threshold pruning).
    pub valid: Option<&'a GpuTensor>,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LayerNormParams {
    rows: u32,
    d: u32,
    group: u32,
    eps: f32,
    in_off: u32,
    in_gs: u32,
    in_rs: u32,
    _pad0: u32,
    out_off: u32,
    out_gs: u32,
    out_rs: u32,
    _pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Im2colParams {
    total: u32,
    chans: u32,
    height: u32,
    width: u32,
    psize: u32,
    grid_w: u32,
    num_patches: u32,
    cols: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PosParams {
    total: u32,
    tokens: u32,
    dim: u32,
    prefix: u32,
}

/// Rows of a LayerNorm: row r lives at `off + (r / group) * group_stride + (r % group) * row_stride`.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    pub t: &'a GpuTensor,
    pub off: usize,
    pub group: usize,
    pub group_stride: usize,
    pub row_stride: usize,
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
        }
    }
}

/// Compiled pipelines, keyed by entry point and override constants; shared by every program of a device.
#[derive(Clone)]
pub struct Kernels {
    gpu: GpuContext,
    modules: Arc<Mutex<HashMap<String, wgpu::ShaderModule>>>,
    pipelines: Arc<Mutex<HashMap<String, wgpu::ComputePipeline>>>,
    /// The GEMM kernel of this adapter: a guess from the device type, or measured by `tune_gemm_blocking`.
    gemm_kernel: Arc<Mutex<GemmKernel>>,
    /// Whether blocks that need no probabilities use the fused attention kernel (else scores GEMM,
    /// softmax, context GEMM): on by default, measured by `tune_attention_blocking`.
    fused_attention: Arc<Mutex<bool>>,
    /// Bound where a kernel's optional input is absent.
    pub(crate) dummy: GpuTensor,
}

pub(crate) fn u(x: usize, what: &str) -> Result<u32> {
    u32::try_from(x).map_err(|_| Error::param(what, format!("{x} does not fit in 32 bits")))
}

impl Kernels {
    pub fn new(gpu: &GpuContext) -> Self {
        Kernels {
            gpu: gpu.clone(),
            modules: Arc::default(),
            pipelines: Arc::default(),
            gemm_kernel: Arc::new(Mutex::new(default_gemm_kernel(gpu))),
            fused_attention: Arc::new(Mutex::new(true)),
            dummy: GpuTensor::zeros(gpu, "dummy", 4),
        }
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    /// The pipeline for `entry` of shader `file` with the given override constants, compiled on first use.
    pub fn pipeline(
        &self,
        file: &'static str,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        self.pipeline_from(
            file,
            || {
                SHADERS
                    .iter()
                    .find(|(n, _)| *n == file)
                    .map(|(_, s)| s.to_string())
                    .unwrap_or_default()
            },
            entry,
            constants,
        )
    }

    /// The pipeline for `entry` of the module called `name`, whose source `src` makes on first use.
    fn pipeline_from(
        &self,
        name: &str,
        src: impl FnOnce() -> String,
        entry: &str,
        constants: &[(&str, f64)],
    ) -> Result<wgpu::ComputePipeline> {
        let key = format!("{name}:{entry}:{constants:?}");
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let device = &self.gpu.device;
        let module = {
            let mut modules = self.modules.lock().unwrap();
            modules
                .entry(name.to_string())
                .or_insert_with(|| {
                    let desc = wgpu::ShaderModuleDescriptor {
                        label: Some(name),
                        source: wgpu::ShaderSource::Wgsl(src().into()),
                    };
                    device.create_shader_module(desc)
                })
                .clone()
        };
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.gpu.check()?;
        self.pipelines.lock().unwrap().insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The GEMM kernel that runs a [`Gemm`] without `kernel` or `naive`.
    pub fn gemm_kernel(&self) -> GemmKernel {
        *self.gemm_kernel.lock().unwrap()
    }

    pub fn set_gemm_kernel(&self, kernel: GemmKernel) {
        *self.gemm_kernel.lock().unwrap() = kernel;
    }

    /// Whether the model runs the fused attention where no hook reads the probabilities.
    pub fn fused_attention(&self) -> bool {
        *self.fused_attention.lock().unwrap()
    }

    pub fn set_fused_attention(&self, on: bool) {
        *self.fused_attention.lock().unwrap() = on;
    }

    /// Time the fused attention against the unfused steps (with the current GEMM kernel) on two
    /// DeiT-Tiny images (197 tokens, 3 heads of 64) and keep the faster for this adapter; once per
    /// adapter and process.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tune_attention_blocking(&self) -> Result<bool> {
        pollster::block_on(self.tune_attention())
    }

    /// [`Self::tune_attention_blocking`] for any caller, the browser included.
    pub async fn tune_attention(&self) -> Result<bool> {
        static TUNED: Mutex<Vec<(String, bool)>> = Mutex::new(Vec::new());
        let id = self.gpu.describe();
        if let Some((_, f)) = TUNED.lock().unwrap().iter().find(|(a, _)| *a == id) {
            self.set_fused_attention(*f);
            return Ok(*f);
        }
        let (b, n, h, dh) = (2, 197, 3, 64);
        let d = h * dh;
        let qkv = GpuTensor::from_slice(&self.gpu, "tune qkv", &vec![0.01f32; b * n * 3 * d]);
        let probs = GpuTensor::zeros(&self.gpu, "tune probs", b * h * n * n);
        let out = GpuTensor::zeros(&self.gpu, "tune out", b * n * d);
        let mut unfused = super::Program::default();
        let q = MatView::rows(&qkv, 3 * d).batched(n * 3 * d, dh);
        let pm = MatView::rows(&probs, n).batched(h * n * n, n * n);
        let heads = |g: Gemm<'static>| Gemm {
            outer: b,
            heads: h,
            ..g
        };
        unfused.push(self.gemm(
            "tune",
            q,
            q.at(d).strides(1, 3 * d),
            pm,
            heads(Gemm::new(n, n, dh)),
        )?);
        unfused.push(self.softmax_rows("tune", &probs, b * h * n, n, n)?);
        let o = MatView::rows(&out, d).batched(n * d, dh);
        unfused.push(self.gemm("tune", pm, q.at(2 * d), o, heads(Gemm::new(n, dh, n)))?);
        let mut fused = super::Program::default();
        fused.push(self.attention(
            "tune",
            &qkv,
            &out,
            (b, n, d, h),
            0.125,
            AttentionBias::default(),
        )?);
        let mut best = [f64::INFINITY; 2];
        for p in [&unfused, &fused] {
            super::program::time_program(&self.gpu, p).await?;
        }
        // Alternate the two so that other load on the device hits both alike.
        for _ in 0..3 {
            for (t, p) in best.iter_mut().zip([&unfused, &fused]) {
                *t = t.min(super::program::time_program(&self.gpu, p).await?);
            }
        }
        let on = best[1] <= best[0];
        TUNED.lock().unwrap().push((id, on));
        self.set_fused_attention(on);
        Ok(on)
    }

    /// Time every [`GemmKernel::CANDIDATES`] on a transformer-sized product (394 x 576 x 192, the
    /// QKV of two DeiT-Tiny images) and keep the fastest for this adapter. Measured once per adapter
    /// and process; about a second on a CPU adapter, milliseconds on a GPU.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tune_gemm_blocking(&self) -> Result<GemmKernel> {
        pollster::block_on(self.tune_gemm())
    }

    /// [`Self::tune_gemm_blocking`] for any caller, the browser included.
    pub async fn tune_gemm(&self) -> Result<GemmKernel> {
        static TUNED: Mutex<Vec<(String, GemmKernel)>> = Mutex::new(Vec::new());
        let id = self.gpu.describe();
        if let Some((_, k)) = TUNED.lock().unwrap().iter().find(|(a, _)| *a == id) {
            self.set_gemm_kernel(*k);
            return Ok(*k);
        }
        let (m, n, kk) = (394, 576, 192);
        let a = GpuTensor::from_slice(&self.gpu, "tune a", &vec![0.01f32; m * kk]);
        let b = GpuTensor::from_slice(&self.gpu, "tune b", &vec![0.01f32; kk * n]);
        let c = GpuTensor::zeros(&self.gpu, "tune c", m * n);
        let mut best = (f64::INFINITY, self.gemm_kernel());
        for &kernel in GemmKernel::CANDIDATES {
            let g = Gemm {
                kernel: Some(kernel),
                ..Gemm::new(m, n, kk)
            };
            let step = self.gemm(
                "tune",
                MatView::rows(&a, kk),
                MatView::rows(&b, n),
                MatView::rows(&c, n),
                g,
            )?;
            let mut program = super::Program::default();
            program.push(step);
            // The first run warms up; the best of the next three counts (other work may share the device).
            super::program::time_program(&self.gpu, &program).await?;
            let mut t = f64::INFINITY;
            for _ in 0..3 {
                t = t.min(super::program::time_program(&self.gpu, &program).await?);
            }
            if t < best.0 {
                best = (t, kernel);
            }
        }
        TUNED.lock().unwrap().push((id, best.1));
        self.set_gemm_kernel(best.1);
        Ok(best.1)
    }

    pub(crate) fn step<P: Pod>(
        &self,
        label: &str,
        pipeline: wgpu::ComputePipeline,
        buffers: &[&GpuTensor],
        params: &P,
        workgroups: [u32; 3],
    ) -> Step {
        let device = &self.gpu.device;
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, t)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: t.buffer.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: buffers.len() as u32,
            resource: uniform.as_entire_binding(),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Step {
            label: label.to_string(),
            pipeline,
            bind_group,
            workgroups,
        }
    }

    /// `C = alpha * A.B (+ bias) (GELU) (+ C)`; C's columns must be contiguous.
    pub fn gemm(&self, label: &str, a: MatView, b: MatView, c: MatView, g: Gemm) -> Result<Step> {
        if c.col_stride != 1 {
            return Err(Error::param("gemm output", "columns must be contiguous"));
        }
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
        };
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let constants = [
            ("HAS_BIAS", flag(g.bias.is_some())),
            ("GELU", flag(g.gelu)),
            ("ACCUMULATE", flag(g.accumulate)),
        ];
        let z = u(g.outer * g.heads.max(1), "gemm batch")?;
        let kernel = match (g.naive, g.kernel) {
            (true, _) => GemmKernel::Naive,
            (false, Some(k)) => k,
            (false, None) => self.gemm_kernel(),
        };
        let (tile_m, tile_n) = match kernel {
            GemmKernel::Naive => (16, 16),
            GemmKernel::Tiled => (64, 64),
            GemmKernel::Blocked { tm, tn4 } => (16 * tm as usize, 4 * tn4 as usize),
        };
        let groups = [g.n.div_ceil(tile_n), g.m.div_ceil(tile_m)];
        if groups.iter().any(|&v| v > MAX_GROUPS as usize) || z > MAX_GROUPS {
            return Err(Error::param(
                "gemm shape",
                format!(
                    "{}x{}x{} batch {z} exceeds the dispatch limit",
                    g.m, g.n, g.k
                ),
            ));
        }
        let pipeline = match kernel {
            GemmKernel::Naive => self.pipeline("matmul", "gemm_naive", &constants)?,
            GemmKernel::Tiled => self.pipeline("matmul", "gemm", &constants)?,
            GemmKernel::Blocked { tm, tn4 } => {
                let (av, bv) = (a_vec4(&a), b_vec4(&b, g.n));
                let name = format!("gemm_rb:{tm}x{tn4}:{}{}", av as u8, bv as u8);
                self.pipeline_from(
                    &name,
                    || gemm_rb_source(tm, tn4, av, bv),
                    "gemm_rb",
                    &constants,
                )?
            }
        };
        let bias = g.bias.unwrap_or(&self.dummy);
        Ok(self.step(
            label,
            pipeline,
            &[a.t, b.t, bias, c.t],
            &params,
            [groups[0] as u32, groups[1] as u32, z],
        ))
    }

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
        let dh = d / heads;
        let params = AttentionParams {
            n: u(n, "tokens")?,
            d: u(d, "width")?,
            log_size: bias.log_size.is_some() as u32,
            masked: bias.valid.is_some() as u32,
            scale,
            _pad: [0; 3],
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
        let name = format!("attention:{dh}");
        let pipeline = self.pipeline_from(&name, || attention_source(dh), "attention", &[])?;
        let sizes = bias.log_size.unwrap_or(&self.dummy);
        let counts = bias.valid.unwrap_or(&self.dummy);
        Ok(self.step(
            label,
            pipeline,
            &[qkv, sizes, counts, out],
            &params,
            [groups as u32, heads as u32, batch as u32],
        ))
    }

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
            _pad: 0,
        };
        let pipeline = self.pipeline("softmax", "softmax_rows", &[])?;
        let sizes = bias.log_size.unwrap_or(&self.dummy);
        let counts = bias.valid.unwrap_or(&self.dummy);
        Ok(self.step(
            label,
            pipeline,
            &[x, sizes, counts],
            &params,
            grid_for_groups(rows),
        ))
    }

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
        let params = LayerNormParams {
            rows: u(rows, "layernorm rows")?,
            d: u(d, "layernorm width")?,
            group: u(x.group.max(1), "layernorm group")?,
            eps,
            in_off: u(x.off, "offset")?,
            in_gs: u(x.group_stride, "stride")?,
            in_rs: u(x.row_stride, "stride")?,
            _pad0: 0,
            out_off: u(y.off, "offset")?,
            out_gs: u(y.group_stride, "stride")?,
            out_rs: u(y.row_stride, "stride")?,
            _pad1: 0,
        };
        if x.group != y.group {
            return Err(Error::param("layernorm", "input and output groups differ"));
        }
        let pipeline = self.pipeline("layernorm", "layernorm", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[x.t, gamma, beta, y.t],
            &params,
            grid_for_groups(rows),
        ))
    }

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
        let pipeline = self.pipeline("embed", "im2col", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[image, patches],
            &params,
            grid_for_items(total, 256),
        ))
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
        let pipeline = self.pipeline("embed", "add_prefix_pos", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[x, prefix_tokens, pos],
            &params,
            grid_for_items(total, 256),
        ))
    }
}

/// Whether A can be read as aligned vec4s along k.
fn a_vec4(a: &MatView) -> bool {
    a.col_stride == 1
        && [a.off, a.row_stride, a.z_outer, a.z_inner, a.t.len]
            .iter()
            .all(|v| v.is_multiple_of(4))
        && a.t.len >= 4
}

/// Whether B can be read as aligned vec4s along n (`n` columns, a multiple of 4).
fn b_vec4(b: &MatView, n: usize) -> bool {
    b.col_stride == 1
        && [b.off, b.row_stride, b.z_outer, b.z_inner, b.t.len, n]
            .iter()
            .all(|v| v.is_multiple_of(4))
        && b.t.len >= 4
}

/// Before any measurement: the register-blocked kernel on CPU adapters (where workgroup memory is
/// ordinary cache and barriers are expensive), the tiled one on GPUs.
fn default_gemm_kernel(gpu: &GpuContext) -> GemmKernel {
    if gpu.info().device_type == wgpu::DeviceType::Cpu {
        GemmKernel::Blocked { tm: 4, tn4: 4 }
    } else {
        GemmKernel::Tiled
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
