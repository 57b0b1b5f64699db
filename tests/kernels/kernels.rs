//! Every WGSL kernel against a plain CPU reference (simple loops, f64 accumulation) on seeded random
//! data, through the public launchers of `Kernels`; plus static checks of the shaders with naga
//! (validation, WebGPU's default workgroup limits, the binding layout the launchers assume).

use zeroprune::gpu::kernels::{grid_for_groups, Activation, Gemm, MatView, RowView, FAMILIES};
use zeroprune::gpu::GpuTensor;

use crate::common::{gpu, kernels, read, rng, run, uniform, upload};

/// f32 on the GPU against an f64 reference: the largest error at the written positions, relative to
/// the largest |reference| value there. f32 rounding (2^-24 per operation) summed over K <= 1000
/// terms, and the A&S erf of the GELU (|error| < 1.5e-7), stay well below it; a wrong index, stride or
/// missed tile edge gives errors of order 1.
const TOL: f64 = 1e-5;

/// Softmax rows must sum to 1 within this.
const SUM_TOL: f64 = 1e-5;

// ---------------------------------------------------------------------------------------------
// Harness

/// A reference result: the expected buffer (the initial contents where nothing is written) and which
/// positions the kernel writes.
struct Expected {
    value: Vec<f64>,
    written: Vec<bool>,
}

impl Expected {
    fn from_initial(init: &[f32]) -> Self {
        Expected {
            value: init.iter().map(|&v| v as f64).collect(),
            written: vec![false; init.len()],
        }
    }
    fn set(&mut self, i: usize, v: f64) {
        assert!(!self.written[i], "reference writes index {i} twice");
        self.value[i] = v;
        self.written[i] = true;
    }
}

/// Positions the kernel must not write are bit-exact; written ones agree within `tol` of the largest
/// reference value. Returns the relative error.
fn check(what: &str, got: &[f32], want: &Expected, tol: f64) -> f64 {
    assert_eq!(got.len(), want.value.len(), "{what}: length");
    let mut scale = 1e-30f64;
    let mut err = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(&want.value).enumerate() {
        if want.written[i] {
            assert!(g.is_finite(), "{what}: non-finite value {g} at {i}");
            scale = scale.max(w.abs());
            err = err.max((g as f64 - w).abs());
        } else {
            assert_eq!(
                g.to_bits(),
                (w as f32).to_bits(),
                "{what}: index {i} must be untouched ({g} != {w})"
            );
        }
    }
    let rel = err / scale;
    eprintln!("{what}: max relative error {rel:.2e}");
    assert!(rel <= tol, "{what}: relative error {rel:.3e} > {tol:e}");
    rel
}

// ---------------------------------------------------------------------------------------------
// GEMM

/// erf to ~1e-16 in f64: `erf(x) = 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (1.3.5...(2n+1))`;
/// every term is positive (no cancellation) and the series converges for all x.
fn erf(x: f64) -> f64 {
    if x.abs() >= 6.0 {
        return x.signum();
    }
    let x2 = x * x;
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= 2.0 * x2 / (2.0 * n + 1.0);
        sum += term;
    }
    2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum
}

/// The exact GELU of timm / Hugging Face.
fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// A GEMM epilogue's activation on the CPU (the reference of every GEMM test).
pub(crate) fn activate(x: f64, a: Activation) -> f64 {
    match a {
        Activation::None => x,
        Activation::Gelu => gelu(x),
        Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        Activation::GeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
    }
}

async fn erf_reference_is_exact() {
    // Values from tables (Abramowitz & Stegun 7.1 / mpmath).
    let table = [
        (0.0, 0.0),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.5, 0.999_999_256_901_627_7),
        (-1.0, -0.842_700_792_949_714_9),
    ];
    for (x, want) in table {
        assert!((erf(x) - want).abs() < 1e-14, "erf({x}) = {}", erf(x));
    }
}

/// A matrix layout without its buffer (the fields of `MatView`).
#[derive(Clone, Copy, Debug)]
struct Lay {
    off: usize,
    rs: usize,
    cs: usize,
    zo: usize,
    zi: usize,
}

impl Lay {
    fn rows(cols: usize) -> Self {
        Lay {
            off: 0,
            rs: cols,
            cs: 1,
            zo: 0,
            zi: 0,
        }
    }
    fn on(self, t: &GpuTensor) -> MatView<'_> {
        MatView {
            t,
            off: self.off,
            row_stride: self.rs,
            col_stride: self.cs,
            z_outer: self.zo,
            z_inner: self.zi,
        }
    }
}

/// Host data and layout of one operand.
struct Operand<'a> {
    data: &'a [f32],
    lay: Lay,
}

fn gemm_ref(a: &Operand, b: &Operand, c: &Operand, bias: Option<&[f32]>, g: &Gemm) -> Expected {
    let mut out = Expected::from_initial(c.data);
    let heads = g.heads.max(1);
    let (al, bl, cl) = (a.lay, b.lay, c.lay);
    for z in 0..g.outer * heads {
        let (zo, zi) = (z / heads, z % heads);
        let ab = al.off + zo * al.zo + zi * al.zi;
        let bb = bl.off + zo * bl.zo + zi * bl.zi;
        let cb = cl.off + zo * cl.zo + zi * cl.zi;
        for i in 0..g.m {
            for j in 0..g.n {
                let mut acc = 0.0f64;
                for k in 0..g.k {
                    acc += a.data[ab + i * al.rs + k * al.cs] as f64
                        * b.data[bb + k * bl.rs + j * bl.cs] as f64;
                }
                let mut v = g.alpha as f64 * acc;
                if let Some(bias) = bias {
                    v += bias[j] as f64;
                }
                v = activate(v, g.activation);
                let idx = cb + i * cl.rs + j * cl.cs;
                if g.accumulate {
                    v += c.data[idx] as f64;
                }
                out.set(idx, v);
            }
        }
    }
    out
}

/// Run one GEMM on the GPU and compare it (the whole C buffer) with the reference.
async fn gemm_case(
    what: &str,
    a: Operand<'_>,
    b: Operand<'_>,
    c: Operand<'_>,
    bias: Option<&[f32]>,
    g: Gemm<'static>,
) -> f64 {
    let (at, bt, ct) = (upload(a.data), upload(b.data), upload(c.data));
    let bias_t = bias.map(upload);
    let step = kernels()
        .gemm(
            what,
            a.lay.on(&at),
            b.lay.on(&bt),
            c.lay.on(&ct),
            Gemm {
                bias: bias_t.as_ref(),
                ..g
            },
        )
        .unwrap();
    run([step]);
    let want = gemm_ref(&a, &b, &c, bias, &g);
    check(what, &read(&ct).await, &want, TOL)
}

/// `y[m, n] (+)= act(x[m, k] . W[k, n] (+ b))`, the linear layer's use.
async fn linear_case(
    seed: u64,
    (m, n, k): (usize, usize, usize),
    bias: bool,
    gelu: bool,
    acc: bool,
    naive: bool,
) -> f64 {
    let mut r = rng(seed);
    let x = uniform(&mut r, m * k, -1.0, 1.0);
    let w = uniform(&mut r, k * n, -1.0, 1.0);
    let b = uniform(&mut r, n, -1.0, 1.0);
    let c = uniform(&mut r, m * n, -2.0, 2.0);
    let what = format!(
        "{} linear {m}x{n}x{k}{}{}{}",
        if naive { "naive" } else { "tiled" },
        if bias { " +bias" } else { "" },
        if gelu { " gelu" } else { "" },
        if acc { " +=C" } else { "" }
    );
    let g = Gemm {
        activation: if gelu {
            Activation::Gelu
        } else {
            Activation::None
        },
        accumulate: acc,
        naive,
        ..Gemm::new(m, n, k)
    };
    gemm_case(
        &what,
        Operand {
            data: &x,
            lay: Lay::rows(k),
        },
        Operand {
            data: &w,
            lay: Lay::rows(n),
        },
        Operand {
            data: &c,
            lay: Lay::rows(n),
        },
        bias.then_some(&b[..]),
        g,
    )
    .await
}

const LINEAR_SHAPES: [(usize, usize, usize); 5] = [
    (197, 192, 192),
    (50, 576, 192),
    (1, 1000, 192),
    (197, 37, 41),
    (3, 5, 7),
];

async fn gemm_linear() {
    let mut worst = 0.0f64;
    for (i, &shape) in LINEAR_SHAPES.iter().enumerate() {
        for (j, (bias, gelu, acc)) in [
            (false, false, false),
            (true, false, false),
            (true, true, false),
            (true, false, true),
            (false, true, true),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = 100 + 10 * i as u64 + j as u64;
            worst = worst.max(linear_case(seed, shape, bias, gelu, acc, false).await);
        }
    }
    eprintln!("gemm_linear: worst {worst:.2e}");
}

async fn gemm_alpha_and_large_gelu_inputs() {
    // alpha scales before the bias; GELU inputs reach |x| ~ 30 (erf saturation on both sides).
    let mut r = rng(7);
    let (m, n, k) = (65, 70, 130);
    let x = uniform(&mut r, m * k, -1.0, 1.0);
    let w = uniform(&mut r, k * n, -1.0, 1.0);
    let b = uniform(&mut r, n, -4.0, 4.0);
    let c = vec![0.0; m * n];
    let g = Gemm {
        alpha: 3.0,
        activation: Activation::Gelu,
        ..Gemm::new(m, n, k)
    };
    gemm_case(
        "tiled linear alpha=3 gelu",
        Operand {
            data: &x,
            lay: Lay::rows(k),
        },
        Operand {
            data: &w,
            lay: Lay::rows(n),
        },
        Operand {
            data: &c,
            lay: Lay::rows(n),
        },
        Some(&b),
        g,
    )
    .await;
}

/// Attention scores exactly as `Block::forward`: `P[b, h] = alpha Q[b, :, h] . K[b, :, h]^T`, read in
/// place from `qkv[B, N, 3D]` into `probs[B, H, N, N]` (which starts with garbage).
async fn scores_case(
    seed: u64,
    batch: usize,
    n: usize,
    heads: usize,
    dh: usize,
    naive: bool,
) -> f64 {
    let mut r = rng(seed);
    let d = heads * dh;
    let qkv = uniform(&mut r, batch * n * 3 * d, -1.0, 1.0);
    let probs = uniform(&mut r, batch * heads * n * n, -9.0, 9.0);
    let q = Lay {
        off: 0,
        rs: 3 * d,
        cs: 1,
        zo: n * 3 * d,
        zi: dh,
    };
    let kt = Lay {
        off: d,
        rs: 1,
        cs: 3 * d,
        ..q
    };
    let p = Lay {
        off: 0,
        rs: n,
        cs: 1,
        zo: heads * n * n,
        zi: n * n,
    };
    let g = Gemm {
        outer: batch,
        heads,
        alpha: 1.0 / (dh as f32).sqrt(),
        naive,
        ..Gemm::new(n, n, dh)
    };
    let what = format!(
        "{} scores B={batch} N={n} H={heads} dh={dh}",
        if naive { "naive" } else { "tiled" }
    );
    gemm_case(
        &what,
        Operand { data: &qkv, lay: q },
        Operand {
            data: &qkv,
            lay: kt,
        },
        Operand {
            data: &probs,
            lay: p,
        },
        None,
        g,
    )
    .await
}

/// Attention context as `Block::forward`: `O[b, :, h] = P[b, h] . V[b, :, h]` into `attn[B, N, D]`.
async fn context_case(
    seed: u64,
    batch: usize,
    n: usize,
    heads: usize,
    dh: usize,
    naive: bool,
) -> f64 {
    let mut r = rng(seed);
    let d = heads * dh;
    let qkv = uniform(&mut r, batch * n * 3 * d, -1.0, 1.0);
    let probs = uniform(&mut r, batch * heads * n * n, 0.0, 1.0);
    let out = uniform(&mut r, batch * n * d, -9.0, 9.0);
    let p = Lay {
        off: 0,
        rs: n,
        cs: 1,
        zo: heads * n * n,
        zi: n * n,
    };
    let v = Lay {
        off: 2 * d,
        rs: 3 * d,
        cs: 1,
        zo: n * 3 * d,
        zi: dh,
    };
    let o = Lay {
        off: 0,
        rs: d,
        cs: 1,
        zo: n * d,
        zi: dh,
    };
    let g = Gemm {
        outer: batch,
        heads,
        naive,
        ..Gemm::new(n, dh, n)
    };
    let what = format!(
        "{} context B={batch} N={n} H={heads} dh={dh}",
        if naive { "naive" } else { "tiled" }
    );
    gemm_case(
        &what,
        Operand {
            data: &probs,
            lay: p,
        },
        Operand { data: &qkv, lay: v },
        Operand { data: &out, lay: o },
        None,
        g,
    )
    .await
}

/// (batch, tokens, heads, head dim): DeiT-tiny-like (dh 64) and a small odd model (dh 20).
const ATTENTION_SHAPES: [(usize, usize, usize, usize); 5] = [
    (2, 197, 3, 64),
    (3, 50, 3, 64),
    (2, 1, 3, 64),
    (2, 197, 2, 20),
    (3, 50, 4, 20),
];

async fn gemm_attention_scores() {
    for (i, &(b, n, h, dh)) in ATTENTION_SHAPES.iter().enumerate() {
        scores_case(200 + i as u64, b, n, h, dh, false).await;
    }
}

async fn gemm_attention_context() {
    for (i, &(b, n, h, dh)) in ATTENTION_SHAPES.iter().enumerate() {
        context_case(300 + i as u64, b, n, h, dh, false).await;
    }
}

async fn gemm_patch_embedding_layout() {
    // As `VisionTransformer::embed`: patches [B * np, pp] projected into rows prefix.. of x[B, N, D];
    // the prefix rows keep their values.
    let mut r = rng(9);
    let (b, np, pp, d, prefix) = (3, 25, 48, 40, 2);
    let n = np + prefix;
    let patches = uniform(&mut r, b * np * pp, -1.0, 1.0);
    let w = uniform(&mut r, pp * d, -1.0, 1.0);
    let bias = uniform(&mut r, d, -1.0, 1.0);
    let x = uniform(&mut r, b * n * d, -9.0, 9.0);
    let g = Gemm {
        outer: b,
        ..Gemm::new(np, d, pp)
    };
    gemm_case(
        "tiled patch embedding",
        Operand {
            data: &patches,
            lay: Lay {
                zo: np * pp,
                ..Lay::rows(pp)
            },
        },
        Operand {
            data: &w,
            lay: Lay::rows(d),
        },
        Operand {
            data: &x,
            lay: Lay {
                off: prefix * d,
                zo: n * d,
                ..Lay::rows(d)
            },
        },
        Some(&bias),
        g,
    )
    .await;
}

async fn gemm_naive() {
    linear_case(400, (197, 37, 41), true, true, false, true).await;
    linear_case(401, (3, 5, 7), true, false, true, true).await;
    linear_case(402, (50, 576, 192), false, false, false, true).await;
    scores_case(403, 3, 50, 4, 20, true).await;
    context_case(404, 2, 197, 2, 20, true).await;
}

async fn gemm_rejects_bad_shapes() {
    let t = upload(&[0.0; 16]);
    let k = kernels();
    let v = MatView::rows(&t, 4);
    let strided_c = v.strides(4, 2);
    assert!(k
        .gemm("c strided", v, v, strided_c, Gemm::new(2, 2, 2))
        .is_err());
    let huge_batch = Gemm {
        outer: 70_000,
        ..Gemm::new(1, 1, 1)
    };
    assert!(k.gemm("batch", v, v, v, huge_batch).is_err());
}

// ---------------------------------------------------------------------------------------------
// Softmax

fn softmax_ref(x: &[f32], rows: usize, cols: usize, stride: usize) -> Expected {
    let mut out = Expected::from_initial(x);
    for r in 0..rows {
        let row = &x[r * stride..r * stride + cols];
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        for (j, &v) in row.iter().enumerate() {
            out.set(r * stride + j, (v as f64 - m).exp() / s);
        }
    }
    out
}

async fn softmax_case(seed: u64, rows: usize, cols: usize, stride: usize, mag: f32) -> f64 {
    let mut r = rng(seed);
    let len = (rows - 1) * stride + cols + 3;
    let x = uniform(&mut r, len, -mag, mag);
    let t = upload(&x);
    run([kernels()
        .softmax_rows("softmax", &t, rows, cols, stride)
        .unwrap()]);
    let got = read(&t).await;
    let what = format!("softmax {rows}x{cols} stride {stride} values +-{mag}");
    let err = check(&what, &got, &softmax_ref(&x, rows, cols, stride), TOL);
    for row in 0..rows {
        let s: f64 = got[row * stride..row * stride + cols]
            .iter()
            .map(|&v| v as f64)
            .sum();
        assert!((s - 1.0).abs() < SUM_TOL, "{what}: row {row} sums to {s}");
    }
    err
}

async fn softmax_rows() {
    softmax_case(500, 2 * 3 * 197, 197, 197, 50.0).await;
    softmax_case(501, 3 * 3 * 50, 50, 50, 50.0).await;
    softmax_case(502, 17, 1, 1, 50.0).await;
    softmax_case(503, 20, 300, 300, 50.0).await;
    softmax_case(504, 9, 1000, 1000, 5.0).await;
    softmax_case(505, 31, 50, 53, 50.0).await; // strided rows: the gaps stay untouched
    softmax_case(506, 40, 197, 197, 1e-3).await; // nearly uniform rows
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

/// A `RowView` without its buffer.
#[derive(Clone, Copy, Debug)]
struct Rows {
    off: usize,
    group: usize,
    gs: usize,
    rs: usize,
}

impl Rows {
    fn dense(d: usize) -> Self {
        Rows {
            off: 0,
            group: 1,
            gs: d,
            rs: d,
        }
    }
    fn start(self, r: usize) -> usize {
        self.off + (r / self.group) * self.gs + (r % self.group) * self.rs
    }
    fn on(self, t: &GpuTensor) -> RowView<'_> {
        RowView {
            t,
            off: self.off,
            group: self.group,
            group_stride: self.gs,
            row_stride: self.rs,
            live: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn layernorm_ref(
    x: &[f32],
    xv: Rows,
    y: &[f32],
    yv: Rows,
    rows: usize,
    d: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Expected {
    let mut out = Expected::from_initial(y);
    for r in 0..rows {
        let row = &x[xv.start(r)..xv.start(r) + d];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (j, &v) in row.iter().enumerate() {
            let o = (v as f64 - mean) * rstd * gamma[j] as f64 + beta[j] as f64;
            out.set(yv.start(r) + j, o);
        }
    }
    out
}

/// Rows with a mean of ~3 and a spread of ~1, like a residual stream (the kernel's two-pass variance
/// must cope with the mean).
const RESIDUAL: (f32, f32) = (2.0, 4.0);

#[allow(clippy::too_many_arguments)]
async fn layernorm_case(
    what: &str,
    seed: u64,
    in_len: usize,
    xv: Rows,
    out_len: usize,
    yv: Rows,
    rows: usize,
    d: usize,
    eps: f32,
    (lo, hi): (f32, f32),
) -> f64 {
    let mut r = rng(seed);
    let x = uniform(&mut r, in_len, lo, hi);
    let y = uniform(&mut r, out_len, -9.0, 9.0);
    let gamma = uniform(&mut r, d, 0.5, 1.5);
    let beta = uniform(&mut r, d, -0.5, 0.5);
    let (xt, yt, gt, bt) = (upload(&x), upload(&y), upload(&gamma), upload(&beta));
    let step = kernels()
        .layernorm(what, xv.on(&xt), yv.on(&yt), rows, d, &gt, &bt, eps)
        .unwrap();
    run([step]);
    let want = layernorm_ref(&x, xv, &y, yv, rows, d, &gamma, &beta, eps);
    check(&format!("{what} eps {eps:e}"), &read(&yt).await, &want, TOL)
}

async fn layernorm_dense() {
    for (i, &(rows, d)) in [(2 * 197, 192), (100, 40), (20, 1000), (30, 7), (1, 129)]
        .iter()
        .enumerate()
    {
        for (j, eps) in [1e-6f32, 1e-12].into_iter().enumerate() {
            let seed = 600 + 10 * i as u64 + j as u64;
            let what = format!("layernorm dense {rows}x{d}");
            let dense = Rows::dense(d);
            layernorm_case(
                &what,
                seed,
                rows * d,
                dense,
                rows * d,
                dense,
                rows,
                d,
                eps,
                RESIDUAL,
            )
            .await;
        }
    }
}

/// Threshold pruning's live rows (packed through `live_row_map`): only the first counts[i] rows of
/// each image are normalised; the masked ones keep what the output held.
async fn layernorm_skips_masked_rows() {
    let (images, n, d) = (3, 20, 24);
    let counts = [20u32, 1, 7];
    let mut r = rng(650);
    let x = uniform(&mut r, images * n * d, RESIDUAL.0, RESIDUAL.1);
    let y = uniform(&mut r, images * n * d, -9.0, 9.0);
    let gamma = uniform(&mut r, d, 0.5, 1.5);
    let beta = uniform(&mut r, d, -0.5, 0.5);
    let (xt, yt, gt, bt) = (upload(&x), upload(&y), upload(&gamma), upload(&beta));
    let ct = GpuTensor::from_slice(gpu(), "counts", &counts[..]);
    let map = GpuTensor::zeros(gpu(), "live rows", 1 + images * n);
    let dense = Rows::dense(d);
    let k = kernels();
    let norm = k
        .layernorm(
            "live",
            dense.on(&xt).live(Some(&map)),
            dense.on(&yt),
            images * n,
            d,
            &gt,
            &bt,
            1e-6,
        )
        .unwrap();
    run([k.live_row_map("map", (images, n), &ct, &map).unwrap(), norm]);
    let all = layernorm_ref(&x, dense, &y, dense, images * n, d, &gamma, &beta, 1e-6);
    let got = read(&yt).await;
    let mut want = Expected::from_initial(&y);
    for row in 0..images * n {
        if row % n < counts[row / n] as usize {
            for i in row * d..(row + 1) * d {
                want.set(i, all.value[i]);
            }
        }
    }
    check("layernorm live rows", &got, &want, TOL);
}

async fn layernorm_grouped_classifier_rows() {
    // As `VisionTransformer::classify`: the CLS and distillation rows (group 2) of each image of
    // x[B, N, D], into a dense head input [B, 2 * D], and into a buffer shaped like x whose other rows
    // must stay untouched.
    for (i, (b, n, d, pre)) in [(3, 197, 192, 2), (2, 50, 40, 1), (4, 5, 7, 2)]
        .into_iter()
        .enumerate()
    {
        let xv = Rows {
            off: 0,
            group: pre,
            gs: n * d,
            rs: d,
        };
        let head_in = Rows {
            off: 0,
            group: pre,
            gs: pre * d,
            rs: d,
        };
        for eps in [1e-6f32, 1e-12] {
            let seed = 700 + i as u64;
            let what = format!("layernorm classifier B={b} N={n} D={d} group {pre} -> head input");
            layernorm_case(
                &what,
                seed,
                b * n * d,
                xv,
                b * pre * d,
                head_in,
                b * pre,
                d,
                eps,
                RESIDUAL,
            )
            .await;
            let what =
                format!("layernorm classifier B={b} N={n} D={d} group {pre} -> in place shape");
            layernorm_case(
                &what,
                seed + 50,
                b * n * d,
                xv,
                b * n * d,
                xv,
                b * pre,
                d,
                eps,
                RESIDUAL,
            )
            .await;
        }
    }
    // Offsets and a row stride that is not the width: the distillation row only, rows of the output
    // spaced by 3 * D.
    let (b, n, d) = (3, 20, 24);
    let xv = Rows {
        off: d,
        group: 1,
        gs: n * d,
        rs: d,
    };
    let yv = Rows {
        off: 5,
        group: 1,
        gs: 3 * d,
        rs: 0,
    };
    layernorm_case(
        "layernorm offsets",
        790,
        b * n * d,
        xv,
        3 * b * d + 5,
        yv,
        b,
        d,
        1e-6,
        RESIDUAL,
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Patch embedding: im2col and add_prefix_pos

fn im2col_ref(
    image: &[f32],
    batch: usize,
    chans: usize,
    (h, w): (usize, usize),
    p: usize,
    out: &[f32],
) -> Expected {
    let (gh, gw) = (h / p, w / p);
    let cols = chans * p * p;
    let mut e = Expected::from_initial(out);
    for b in 0..batch {
        for py in 0..gh {
            for px in 0..gw {
                let row = (b * gh + py) * gw + px;
                for c in 0..chans {
                    for ky in 0..p {
                        for kx in 0..p {
                            let col = (c * p + ky) * p + kx;
                            let v = image[((b * chans + c) * h + py * p + ky) * w + px * p + kx];
                            e.set(row * cols + col, v as f64);
                        }
                    }
                }
            }
        }
    }
    e
}

fn add_prefix_pos_ref(
    x: &[f32],
    prefix_tokens: &[f32],
    pos: &[f32],
    (batch, tokens, dim, prefix): (usize, usize, usize, usize),
) -> Expected {
    let mut e = Expected::from_initial(x);
    for b in 0..batch {
        for t in 0..tokens {
            for j in 0..dim {
                let i = (b * tokens + t) * dim + j;
                let td = t * dim + j;
                // One f32 addition, as on the GPU: the results must agree bit for bit.
                let v = if t < prefix {
                    prefix_tokens[td] + pos[td]
                } else {
                    x[i] + pos[td]
                };
                e.set(i, v as f64);
            }
        }
    }
    e
}

async fn embed_case(
    seed: u64,
    batch: usize,
    chans: usize,
    hw: (usize, usize),
    p: usize,
    prefix: usize,
) {
    let mut r = rng(seed);
    let (h, w) = hw;
    let np = (h / p) * (w / p);
    let cols = chans * p * p;
    let image = uniform(&mut r, batch * chans * h * w, -1.0, 1.0);
    let patches = uniform(&mut r, batch * np * cols + 7, -9.0, 9.0);
    let (it, pt) = (upload(&image), upload(&patches));
    run([kernels()
        .im2col("im2col", &it, &pt, batch, chans, hw, p)
        .unwrap()]);
    let what = format!("im2col B={batch} C={chans} {h}x{w} patch {p}");
    check(
        &what,
        &read(&pt).await,
        &im2col_ref(&image, batch, chans, hw, p, &patches),
        0.0,
    );

    let (tokens, dim) = (np + prefix, 24);
    let x = uniform(&mut r, batch * tokens * dim, -1.0, 1.0);
    let pre = uniform(&mut r, prefix * dim, -1.0, 1.0);
    let pos = uniform(&mut r, tokens * dim, -1.0, 1.0);
    let (xt, pret, post) = (upload(&x), upload(&pre), upload(&pos));
    let shape = (batch, tokens, dim, prefix);
    run([kernels()
        .add_prefix_pos("pos", &xt, &pret, &post, shape)
        .unwrap()]);
    let what = format!("add_prefix_pos B={batch} N={tokens} D={dim} prefix {prefix}");
    check(
        &what,
        &read(&xt).await,
        &add_prefix_pos_ref(&x, &pre, &pos, shape),
        0.0,
    );
}

async fn im2col_and_add_prefix_pos() {
    embed_case(800, 2, 3, (40, 40), 8, 1).await;
    embed_case(801, 2, 3, (40, 40), 8, 2).await;
    embed_case(802, 2, 3, (40, 48), 8, 1).await; // not square: height and width must not be swapped
    embed_case(803, 1, 3, (44, 43), 8, 2).await; // not a multiple of the patch: the border is dropped
    embed_case(804, 1, 3, (224, 224), 16, 2).await;
}

// ---------------------------------------------------------------------------------------------
// Grids past 65535 workgroups

async fn grid_spills_into_y() {
    assert_eq!(grid_for_groups(0), [1, 1, 1]);
    assert_eq!(grid_for_groups(65_535), [65_535, 1, 1]);
    assert_eq!(grid_for_groups(65_536), [65_535, 2, 1]);
    assert_eq!(grid_for_groups(70_000), [65_535, 2, 1]);
    assert_eq!(grid_for_groups(131_071), [65_535, 3, 1]);
}

async fn softmax_more_than_65535_rows() {
    softmax_case(900, 70_000, 4, 4, 50.0).await;
}

async fn layernorm_more_than_65535_rows() {
    let d = 4;
    let rows = 70_000;
    let v = Rows::dense(d);
    layernorm_case(
        "layernorm 70000 rows",
        901,
        rows * d,
        v,
        rows * d + 3,
        v,
        rows,
        d,
        1e-6,
        // Centred values: a width-4 row whose values nearly coincide would otherwise amplify the f32
        // rounding of a large mean (conditioning, not the kernel).
        (-1.0, 1.0),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Static checks of the WGSL

/// Every WGSL family, assembled as the library loads it (prelude, generated parameter structs,
/// shared pieces, the file), validates with naga, stays inside WebGPU's default limits, and
/// declares exactly what its Rust module says: every entry point is a declared kernel, whose
/// storage bindings are its slots in order (name, read or read-write, f32 or u32) and whose
/// parameter block follows them with the generated struct's name and size.
async fn shaders_validate_within_webgpu_default_limits() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    use naga::{AddressSpace, ScalarKind, StorageAccess, TypeInner};
    use zeroprune::gpu::kernel::{Access, Elem};

    let limits = wgpu::Limits::default();
    let mut kernels = 0;
    for family in FAMILIES {
        let src = family.wgsl();
        let name = family.name;
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&src)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}.wgsl: {}", e.emit_to_string(&src)));
        let mut entries: Vec<&str> = module
            .entry_points
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        let mut declared: Vec<&str> = family.kernels.iter().map(|k| k.entry).collect();
        entries.sort();
        declared.sort();
        assert_eq!(
            entries, declared,
            "{name}: entry points and declared kernels"
        );
        for (i, ep) in module.entry_points.iter().enumerate() {
            let what = format!("{name}.wgsl {}", ep.name);
            let kernel = family.kernels.iter().find(|k| k.entry == ep.name).unwrap();
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{what}");
            assert!(ep.workgroup_size_overrides.is_none(), "{what}");
            let [x, y, z] = ep.workgroup_size;
            assert!(x <= limits.max_compute_workgroup_size_x, "{what}: x {x}");
            assert!(y <= limits.max_compute_workgroup_size_y, "{what}: y {y}");
            assert!(z <= limits.max_compute_workgroup_size_z, "{what}: z {z}");
            let invocations = x * y * z;
            assert!(
                invocations <= limits.max_compute_invocations_per_workgroup,
                "{what}: {invocations} invocations per workgroup"
            );

            let uses = info.get_entry_point(i);
            let used = || {
                module
                    .global_variables
                    .iter()
                    .filter(|(h, _)| !uses[*h].is_empty())
            };
            let size = |ty| module.types[ty].inner.size(module.to_ctx());
            let shared: u32 = used()
                .filter(|(_, g)| g.space == AddressSpace::WorkGroup)
                .map(|(_, g)| size(g.ty))
                .sum();
            assert!(
                shared <= limits.max_compute_workgroup_storage_size,
                "{what}: {shared} bytes of workgroup memory"
            );

            // Storage bindings 0..n of group 0 are the declared slots, in order.
            let mut storage: Vec<_> = used()
                .filter_map(|(_, g)| match g.space {
                    AddressSpace::Storage { access } => Some((g, access)),
                    _ => None,
                })
                .collect();
            storage.sort_by_key(|(g, _)| g.binding.as_ref().unwrap().binding);
            assert_eq!(
                storage.len(),
                kernel.slots.len(),
                "{what}: storage bindings"
            );
            for (slot_index, ((g, access), slot)) in storage.iter().zip(kernel.slots).enumerate() {
                let b = g.binding.as_ref().unwrap();
                assert_eq!(
                    (b.group, b.binding),
                    (0, slot_index as u32),
                    "{what}: {}",
                    slot.name
                );
                assert_eq!(
                    g.name.as_deref(),
                    Some(slot.name),
                    "{what}: slot {slot_index}"
                );
                let writes = access.contains(StorageAccess::STORE);
                assert_eq!(
                    writes,
                    slot.access == Access::ReadWrite,
                    "{what}: {} access",
                    slot.name
                );
                let TypeInner::Array { base, .. } = module.types[g.ty].inner else {
                    panic!("{what}: {} is not an array", slot.name)
                };
                let scalar = match module.types[base].inner {
                    TypeInner::Scalar(s) => s,
                    TypeInner::Vector { scalar, .. } => scalar,
                    ref other => panic!("{what}: {} holds {other:?}", slot.name),
                };
                let elem = match scalar.kind {
                    ScalarKind::Float => Elem::F32,
                    ScalarKind::Uint => Elem::U32,
                    other => panic!("{what}: {} holds {other:?}", slot.name),
                };
                assert_eq!(
                    (elem, scalar.width),
                    (slot.elem, 4),
                    "{what}: {} element",
                    slot.name
                );
            }
            // The parameter block: after the slots, the generated struct, padded to 16 bytes.
            let n = kernel.slots.len() as u32;
            let uniforms: Vec<_> = used()
                .filter(|(_, g)| g.space == AddressSpace::Uniform)
                .collect();
            assert_eq!(uniforms.len(), 1, "{what}: one parameter block");
            let (_, u) = uniforms[0];
            let b = u.binding.as_ref().unwrap();
            assert_eq!((b.group, b.binding), (0, n), "{what}: parameter binding");
            assert_eq!(
                module.types[u.ty].name.as_deref(),
                Some(kernel.params_name),
                "{what}: parameter struct"
            );
            assert_eq!(
                size(u.ty) as usize,
                kernel.params_bytes,
                "{what}: parameter block size"
            );
            assert_eq!(kernel.params_bytes % 16, 0, "{what}: padded to 16 bytes");
            eprintln!("{what}: workgroup {x}x{y}x{z}, {shared} bytes shared, {n} storage bindings");
            kernels += 1;
        }
    }
    assert!(kernels >= 20, "only {kernels} kernels declared");
}

/// `const NAME: u32 = <n>u;` in `src`: what a WGSL file declares its workgroup width as.
#[cfg(not(target_arch = "wasm32"))]
fn wgsl_const(src: &str, name: &str) -> u32 {
    let decl = format!("const {name}: u32 = ");
    let at = src.find(&decl).expect("the constant") + decl.len();
    let digits: String = src[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

/// A step records the workgroup size of its kernel as the WGSL it was compiled from declares it:
/// softmax's `const WG` (and the width the host writes into its subgroup form), the register-
/// blocked GEMM template's `WG`, the tiled GEMM's literal 16 x 16; its invocations are its
/// workgroups times that.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn steps_record_the_workgroup_size_their_wgsl_declares() {
    use zeroprune::gpu::{GemmKernel, Kernels};
    let g = gpu();
    let k = Kernels::new(g);
    let x = GpuTensor::zeros(g, "x", 10 * 197);
    let softmax = include_str!("../../shaders/softmax.wgsl");
    assert!(softmax.contains("@workgroup_size(WG, 1, 1)"));
    k.set_subgroups(false);
    let step = k.softmax_rows("softmax", &x, 10, 197, 197).unwrap();
    assert_eq!(step.workgroup_size, Some([wgsl_const(softmax, "WG"), 1, 1]));
    assert_eq!(step.workgroups, [10, 1, 1]);
    assert_eq!(
        step.invocations(),
        Some(10 * u64::from(wgsl_const(softmax, "WG")))
    );
    if let (true, Some(width)) = (g.has_subgroups(), g.reduce_subgroup_width()) {
        k.set_subgroups(true);
        let step = k.softmax_rows("softmax", &x, 10, 197, 197).unwrap();
        assert_eq!(step.workgroup_size, Some([width, 1, 1]));
    }

    let rb = include_str!("../../shaders/gemm_rb.wgsl");
    assert!(rb.contains("@compute @workgroup_size(WG, 1, 1)"));
    let tiled = include_str!("../../shaders/gemm_tiled.wgsl");
    assert!(tiled.contains("@compute @workgroup_size(16, 16, 1)"));
    let (m, n, kk) = (197, 192, 64);
    let a = GpuTensor::zeros(g, "a", m * kk);
    let b = GpuTensor::zeros(g, "b", kk * n);
    let c = GpuTensor::zeros(g, "c", m * n);
    for (kernel, size) in [
        (
            GemmKernel::Blocked { tm: 4, tn4: 4 },
            [wgsl_const(rb, "WG"), 1, 1],
        ),
        (GemmKernel::Tiled { tm: 4 }, [16, 16, 1]),
        (GemmKernel::Tiled { tm: 8 }, [16, 16, 1]),
    ] {
        let step = k
            .gemm(
                "gemm",
                MatView::rows(&a, kk),
                MatView::rows(&b, n),
                MatView::rows(&c, n),
                Gemm {
                    kernel: Some(kernel),
                    ..Gemm::new(m, n, kk)
                },
            )
            .unwrap();
        assert_eq!(step.workgroup_size, Some(size), "{kernel}");
        let groups: u64 = step.workgroups.iter().map(|&w| u64::from(w)).product();
        let per_group: u64 = size.iter().map(|&s| u64::from(s)).product();
        assert_eq!(step.invocations(), Some(groups * per_group), "{kernel}");
    }
}

gpu_tests!(
    erf_reference_is_exact,
    gemm_linear,
    gemm_alpha_and_large_gelu_inputs,
    gemm_attention_scores,
    gemm_attention_context,
    gemm_patch_embedding_layout,
    gemm_naive,
    gemm_rejects_bad_shapes,
    softmax_rows,
    layernorm_dense,
    layernorm_skips_masked_rows,
    layernorm_grouped_classifier_rows,
    im2col_and_add_prefix_pos,
    grid_spills_into_y,
    softmax_more_than_65535_rows,
    layernorm_more_than_65535_rows,
    shaders_validate_within_webgpu_default_limits,
);
