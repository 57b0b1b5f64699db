//! Every GEMM kernel variant (naive, tiled, each register-blocked tile, with scalar and vec4 loads)
//! against a CPU reference: odd and aligned M/N/K, strided and batched views, every epilogue; and
//! naga validation of every generated variant within WebGPU's default limits.

use crate::common::{gpu, kernels, run, upload};
use crate::kernels::activate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroprune::gpu::kernel::Elem;
use zeroprune::gpu::kernels::{
    gemm_rb_source, gemm_tiled_source, with_norm, Activation, Gemm, GemmKernel, LiveRows, MatView,
};
use zeroprune::gpu::GpuTensor;

/// Layout of one operand: offset, row stride, column stride, outer and inner batch strides.
#[derive(Clone, Copy, Debug)]
struct Lay(usize, usize, usize, usize, usize);

impl Lay {
    fn on(self, t: &GpuTensor) -> MatView<'_> {
        MatView {
            t,
            off: self.0,
            row_stride: self.1,
            col_stride: self.2,
            z_outer: self.3,
            z_inner: self.4,
        }
    }
    fn at(self, z: usize, heads: usize, r: usize, c: usize) -> usize {
        self.0 + (z / heads) * self.3 + (z % heads) * self.4 + r * self.1 + c * self.2
    }
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    outer: usize,
    heads: usize,
    a: Lay,
    b: Lay,
    c: Lay,
    /// Values in each buffer (at least what the layouts reach).
    lens: (usize, usize, usize),
}

/// `x` as stored in `elem` (f16 rounds to nearest), back as f32.
fn stored(x: f32, elem: Elem) -> f32 {
    match elem {
        Elem::F16 => half::f16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// Run `case` with `kernel` and every epilogue combination; returns the worst relative error.
async fn check(seed: u64, case: &Case, kernel: GemmKernel) -> f64 {
    check_as(seed, case, kernel, [Elem::F32; 3]).await
}

/// [`check`] with A, B and C stored as `elems`: the reference takes the stored (rounded) inputs
/// and sums in f64; an f16 C adds its own rounding (half an f16 ulp, relative).
async fn check_as(seed: u64, case: &Case, kernel: GemmKernel, elems: [Elem; 3]) -> f64 {
    let mut r = StdRng::seed_from_u64(seed);
    let mut v = |n: usize| -> Vec<f32> { (0..n).map(|_| r.random_range(-1.0..1.0)).collect() };
    let (a, b, c0, bias) = (v(case.lens.0), v(case.lens.1), v(case.lens.2), v(case.n));
    let gpu = gpu();
    let at = GpuTensor::from_f32(gpu, "a", &a, elems[0]);
    let bt = GpuTensor::from_f32(gpu, "b", &b, elems[1]);
    let biast = upload(&bias);
    let a: Vec<f32> = a.iter().map(|&x| stored(x, elems[0])).collect();
    let b: Vec<f32> = b.iter().map(|&x| stored(x, elems[1])).collect();
    let c0: Vec<f32> = c0.iter().map(|&x| stored(x, elems[2])).collect();
    let tolerance = if elems[2] == Elem::F16 { 1e-3 } else { 2e-5 };
    let mut worst = 0.0f64;
    // Every epilogue (parameters of one pipeline, so they cost no compiles).
    let epilogues = [
        (false, Activation::None, false, 1.0f32),
        (true, Activation::None, false, 0.5),
        (true, Activation::Gelu, false, 1.0),
        (true, Activation::QuickGelu, false, 1.0),
        (true, Activation::GeluTanh, false, 1.0),
        (true, Activation::None, true, 1.0),
        (false, Activation::Gelu, true, 2.0),
    ];
    for (has_bias, act, acc, alpha) in epilogues {
        let ct = GpuTensor::from_f32(gpu, "c", &c0, elems[2]);
        let g = Gemm {
            outer: case.outer,
            heads: case.heads,
            alpha,
            bias: has_bias.then_some(&biast),
            activation: act,
            accumulate: acc,
            kernel: Some(kernel),
            ..Gemm::new(case.m, case.n, case.k)
        };
        let step = kernels()
            .gemm(
                "gemm test",
                case.a.on(&at),
                case.b.on(&bt),
                case.c.on(&ct),
                g,
            )
            .unwrap();
        run([step]);
        let got = ct.read_f32(gpu).await.expect("readback");
        let mut want: Vec<f64> = c0.iter().map(|&x| x as f64).collect();
        let mut written = vec![false; c0.len()];
        let mut scale = 1e-6f64;
        for z in 0..case.outer * case.heads {
            for i in 0..case.m {
                for j in 0..case.n {
                    let mut s = 0.0f64;
                    for kk in 0..case.k {
                        s += a[case.a.at(z, case.heads, i, kk)] as f64
                            * b[case.b.at(z, case.heads, kk, j)] as f64;
                    }
                    let mut x = alpha as f64 * s;
                    if has_bias {
                        x += bias[j] as f64;
                    }
                    x = activate(x, act);
                    let idx = case.c.at(z, case.heads, i, j);
                    if acc {
                        x += c0[idx] as f64;
                    }
                    want[idx] = x;
                    written[idx] = true;
                    scale = scale.max(x.abs());
                }
            }
        }
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            if written[i] {
                assert!(g.is_finite(), "{kernel}: non-finite at {i}");
                worst = worst.max((g as f64 - w).abs() / scale);
            } else {
                assert_eq!(g, c0[i], "{kernel}: wrote outside C at {i}");
            }
        }
        assert!(
            worst < tolerance,
            "{kernel} {elems:?} m{} n{} k{} bias {has_bias} {act:?} acc {acc}: error {worst:e}",
            case.m,
            case.n,
            case.k
        );
    }
    worst
}

fn linear(m: usize, n: usize, k: usize) -> Case {
    Case {
        m,
        n,
        k,
        outer: 1,
        heads: 1,
        a: Lay(0, k, 1, 0, 0),
        b: Lay(0, n, 1, 0, 0),
        c: Lay(0, n, 1, 0, 0),
        lens: (m * k, k * n, m * n),
    }
}

/// Context: P.V with P rows of odd length (2 images, 23 tokens, 3 heads of 8), written head by
/// head into [B, N, D].
fn context_case() -> Case {
    let (b, n, h, dh) = (2, 23, 3, 8);
    let d = h * dh;
    Case {
        m: n,
        n: dh,
        k: n,
        outer: b,
        heads: h,
        a: Lay(0, n, 1, h * n * n, n * n),
        b: Lay(2 * d, 3 * d, 1, n * 3 * d, dh),
        c: Lay(0, d, 1, n * d, dh),
        lens: (b * h * n * n, b * n * 3 * d, b * n * d),
    }
}

fn all_kernels() -> Vec<GemmKernel> {
    GemmKernel::CANDIDATES.to_vec()
}

/// The register-blocked tile tested with every f16 storage: the conversions are the template's, the
/// same for every tile, and each storage is a module of its own to compile.
const FULL_BLOCKED: GemmKernel = GemmKernel::Blocked { tm: 4, tn4: 4 };

async fn gemm_variants_on_linear_shapes() {
    // (both vec4), (both scalar: odd k and n), (A scalar, B vec4), (A vec4, B scalar), tiny, one row.
    let shapes = [
        (37, 20, 12),
        (37, 19, 13),
        (65, 24, 13),
        (130, 21, 16),
        (1, 1, 1),
        (1, 40, 8),
        (300, 68, 45),
    ];
    for kernel in all_kernels() {
        for (i, &(m, n, k)) in shapes.iter().enumerate() {
            check(10 + i as u64, &linear(m, n, k), kernel).await;
        }
    }
}

async fn gemm_variants_on_strided_and_batched_views() {
    for kernel in all_kernels() {
        // Attention scores: Q.K^T per (image, head) read in place from qkv rows (B is k-contiguous).
        let (b, n, h, dh) = (2, 23, 3, 8);
        let d = h * dh;
        let scores = Case {
            m: n,
            n,
            k: dh,
            outer: b,
            heads: h,
            a: Lay(0, 3 * d, 1, n * 3 * d, dh),
            b: Lay(d, 1, 3 * d, n * 3 * d, dh),
            c: Lay(0, n, 1, h * n * n, n * n),
            lens: (b * n * 3 * d, b * n * 3 * d, b * h * n * n),
        };
        check(1, &scores, kernel).await;
        check(2, &context_case(), kernel).await;
        // A transposed (column-major), an offset C with padded rows, an outer batch with broadcast B.
        let odd = Case {
            m: 17,
            n: 12,
            k: 9,
            outer: 3,
            heads: 1,
            a: Lay(3, 1, 17, 17 * 9 + 5, 0),
            b: Lay(4, 12, 1, 0, 0),
            c: Lay(7, 15, 1, 17 * 15, 0),
            lens: (3 + 3 * (17 * 9 + 5), 4 + 9 * 12, 7 + 3 * 17 * 15),
        };
        check(3, &odd, kernel).await;
        // Aligned offsets and strides (vec4 on both sides) with a batch.
        let aligned = Case {
            m: 70,
            n: 16,
            k: 24,
            outer: 2,
            heads: 2,
            a: Lay(4, 28, 1, 2 * 70 * 28, 70 * 28),
            b: Lay(8, 20, 1, 2 * 24 * 20, 24 * 20),
            c: Lay(0, 16, 1, 2 * 70 * 16, 70 * 16),
            lens: (4 + 4 * 70 * 28, 8 + 4 * 24 * 20, 4 * 70 * 16),
        };
        check(4, &aligned, kernel).await;
    }
}

async fn gemm_variants_with_f16_storage() {
    if !gpu().has_f16() {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    use Elem::{F16, F32};
    // All three halves (fc1 into the hidden layer), f16 weights alone, and f16 A and C.
    let combos = [[F16, F16, F16], [F32, F16, F32], [F16, F32, F16]];
    let context = context_case();
    let kernels = all_kernels()
        .into_iter()
        .filter(|k| !matches!(k, GemmKernel::Blocked { .. }) || *k == FULL_BLOCKED);
    for kernel in kernels {
        for elems in combos {
            // vec4 on both sides; scalar on both.
            check_as(20, &linear(37, 20, 12), kernel, elems).await;
            check_as(21, &linear(37, 19, 13), kernel, elems).await;
        }
        // Strided and batched (P.V into the f16 context).
        check_as(22, &context, kernel, combos[2]).await;
    }
}

/// Threshold pruning's live rows: every kernel computes the first counts[i] rows of each image and
/// leaves the others as they were: on a linear layer over the packed live rows (the map from
/// `live_row_map`, checked too), and per (image, head) on attention-shaped products (items follow
/// the outer index).
async fn gemm_variants_skip_masked_rows() {
    let (items, rows, n, k) = (3, 70, 12, 16);
    let counts = [70u32, 1, 33];
    let counts_t = GpuTensor::from_slice(gpu(), "counts", &counts[..]);
    let map_t = GpuTensor::zeros(gpu(), "map", 1 + items * rows);
    run([kernels()
        .live_row_map("map", (items, rows), &counts_t, &map_t)
        .unwrap()]);
    let map: Vec<u32> = map_t.read(gpu()).await.expect("readback");
    let live_rows: Vec<u32> = (0..items * rows)
        .filter(|&r| r % rows < counts[r / rows] as usize)
        .map(|r| r as u32)
        .collect();
    assert_eq!(map[0] as usize, live_rows.len());
    assert_eq!(&map[1..1 + live_rows.len()], &live_rows[..]);

    let linear_case = linear(items * rows, n, k);
    // Attention-shaped: outer = images, heads = 2, one matrix of `rows` queries per (image, head);
    // the scores have the image's keys as columns, the context sums over them.
    let heads = 2;
    let per_image = |m: usize, n: usize, k: usize| Case {
        m,
        n,
        k,
        outer: items,
        heads,
        a: Lay(0, k, 1, heads * m * k, m * k),
        b: Lay(0, n, 1, heads * k * n, k * n),
        c: Lay(0, n, 1, heads * m * n, m * n),
        lens: (
            items * heads * m * k,
            items * heads * k * n,
            items * heads * m * n,
        ),
    };
    let (rows_only, scores, context) = (
        per_image(rows, n, k),
        per_image(rows, rows, k),
        per_image(rows, n, rows),
    );
    let image = |key_cols, key_sum| LiveRows::PerImage {
        counts: &counts_t,
        key_cols,
        key_sum,
    };
    let mut r = StdRng::seed_from_u64(40);
    for kernel in all_kernels() {
        let cases = [
            (&linear_case, LiveRows::Packed { map: &map_t }, "packed"),
            (&rows_only, image(false, false), "per image"),
            (&scores, image(true, false), "per image, key columns"),
            (&context, image(false, true), "per image, key sum"),
        ];
        for (case, live, what) in cases {
            let (key_cols, key_sum) = match live {
                LiveRows::PerImage {
                    key_cols, key_sum, ..
                } => (key_cols, key_sum),
                LiveRows::Packed { .. } => (false, false),
            };
            let mut v =
                |len: usize| -> Vec<f32> { (0..len).map(|_| r.random_range(-1.0..1.0)).collect() };
            let (a, b) = (v(case.lens.0), v(case.lens.1));
            let c0 = vec![5.0f32; case.lens.2];
            let (at, bt, ct) = (upload(&a), upload(&b), upload(&c0));
            let g = Gemm {
                outer: case.outer,
                heads: case.heads,
                kernel: Some(kernel),
                live: Some(live),
                ..Gemm::new(case.m, case.n, case.k)
            };
            let step = kernels()
                .gemm(
                    "live rows",
                    case.a.on(&at),
                    case.b.on(&bt),
                    case.c.on(&ct),
                    g,
                )
                .unwrap();
            run([step]);
            let got = ct.read_f32(gpu()).await.expect("readback");
            for z in 0..case.outer * case.heads {
                for i in 0..case.m {
                    // The image and the row in it: both layouts put image-major rows in order.
                    let flat = (z / case.heads) * rows + i;
                    let count = counts[flat / rows] as usize;
                    let live_row = flat % rows < count;
                    for j in 0..case.n {
                        let idx = case.c.at(z, case.heads, i, j);
                        if live_row && !(key_cols && j >= count) {
                            let terms = if key_sum { count } else { case.k };
                            let want: f64 = (0..terms)
                                .map(|kk| {
                                    a[case.a.at(z, case.heads, i, kk)] as f64
                                        * b[case.b.at(z, case.heads, kk, j)] as f64
                                })
                                .sum();
                            assert!(
                                (got[idx] as f64 - want).abs() < 1e-4,
                                "{kernel} {what}: live row {i} column {j} of matrix {z}"
                            );
                        } else {
                            assert_eq!(
                                got[idx], 5.0,
                                "{kernel} {what}: masked row {i} or column {j} of matrix {z} written"
                            );
                        }
                    }
                }
            }
        }
    }
}

// Native only: it measures with blocking waits / loads a model from disk.
#[cfg(not(target_arch = "wasm32"))]
async fn the_library_choice_is_tuned_and_used() {
    let k = kernels();
    let chosen = k.tune_gemm_blocking().unwrap();
    assert!(GemmKernel::CANDIDATES.contains(&chosen));
    assert_eq!(k.gemm_kernel(), chosen);
    assert!(GemmKernel::CANDIDATES.contains(&k.choice().gemm_small));
    assert!(k.choice().gemm_small.fits_small_products());
    // Products below the size-class boundary run the small products' choice.
    let boundary = zeroprune::gpu::SMALL_GEMM_OUTPUTS;
    assert_eq!(k.gemm_kernel_for(boundary), chosen);
    assert_eq!(k.gemm_kernel_for(boundary - 1), k.choice().gemm_small);
    // The default (kernel: None) runs the chosen one and is correct.
    let case = linear(50, 36, 20);
    let mut r = StdRng::seed_from_u64(5);
    let a: Vec<f32> = (0..50 * 20).map(|_| r.random_range(-1.0..1.0)).collect();
    let b: Vec<f32> = (0..20 * 36).map(|_| r.random_range(-1.0..1.0)).collect();
    let (at, bt, ct) = (upload(&a), upload(&b), upload(&vec![0.0; 50 * 36]));
    let step = k
        .gemm(
            "default",
            case.a.on(&at),
            case.b.on(&bt),
            case.c.on(&ct),
            Gemm::new(50, 36, 20),
        )
        .unwrap();
    run([step]);
    let got = ct.read_f32(gpu()).await.expect("readback");
    for i in 0..50 {
        for j in 0..36 {
            let want: f32 = (0..20).map(|kk| a[i * 20 + kk] * b[kk * 36 + j]).sum();
            assert!((got[i * 36 + j] - want).abs() < 1e-4);
        }
    }
}

async fn every_generated_gemm_variant_validates_within_webgpu_limits() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let limits = wgpu::Limits::default();
    let mut tiles = vec![(4, 1)];
    for k in GemmKernel::CANDIDATES {
        if let GemmKernel::Blocked { tm, tn4 } = *k {
            tiles.push((tm, tn4));
        }
    }
    for (tm, tn4) in tiles {
        for (av, bv, norm) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (false, false, true),
            (true, true, true),
        ] {
            let src = with_norm(gemm_rb_source(tm, tn4, av, bv), norm);
            let what = format!("gemm_rb {tm}x{tn4} vec4 a {av} b {bv} norm {norm}");
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
            Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
            assert_eq!(module.entry_points.len(), 1, "{what}");
            let ep = &module.entry_points[0];
            let [x, y, z] = ep.workgroup_size;
            assert!(x * y * z <= limits.max_compute_invocations_per_workgroup);
            assert!(x <= limits.max_compute_workgroup_size_x);
            // No workgroup memory at all.
            assert!(module
                .global_variables
                .iter()
                .all(|(_, g)| g.space != naga::AddressSpace::WorkGroup));
            // The parameter block is the 112-byte GemmParams (25 words, padded), at binding 6 after
            // A, B, bias, C, the live-row counts and the residual.
            let (_, u) = module
                .global_variables
                .iter()
                .find(|(_, g)| g.space == naga::AddressSpace::Uniform)
                .unwrap();
            assert_eq!(module.types[u.ty].inner.size(module.to_ctx()), 112);
            assert_eq!(u.binding.as_ref().unwrap().binding, 6);
            assert_eq!(src.contains("array<vec4<T_"), av || bv, "{what}");
        }
    }
}

async fn both_tiled_gemm_variants_validate_within_webgpu_limits() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let limits = wgpu::Limits::default();
    for (wide, norm) in [(false, false), (true, false), (false, true), (true, true)] {
        let src = with_norm(gemm_tiled_source(wide), norm);
        let what = format!("gemm_tiled wide {wide} norm {norm}");
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{what}: {}", e.emit_to_string(&src)));
        let ep = &module.entry_points[0];
        let [x, y, z] = ep.workgroup_size;
        assert_eq!(x * y * z, 256, "{what}");
        // Both tiles (A padded) fit WebGPU's default workgroup memory.
        let shared: u32 = module
            .global_variables
            .iter()
            .filter(|(_, g)| g.space == naga::AddressSpace::WorkGroup)
            .map(|(_, g)| module.types[g.ty].inner.size(module.to_ctx()))
            .sum();
        assert!(
            shared <= limits.max_compute_workgroup_storage_size,
            "{what}: {shared} bytes"
        );
        assert!(shared > 8000, "{what}: {shared} bytes");
        assert!(src.contains(if wide {
            "const BM: u32 = 128u;"
        } else {
            "const BM: u32 = 64u;"
        }));
    }
}

/// A LayerNorm folded into the GEMM (`Gemm::norm`): every kernel, against LayerNorm then the
/// product in f64, on rows with a large common offset and one outlier column (the mean and the
/// variance come from sums the kernel gathers), every epilogue, f16 weights, and packed live rows.
async fn gemm_variants_with_a_folded_layernorm() {
    let eps = 1e-6f32;
    let gpu = gpu();
    for kernel in all_kernels() {
        for (seed, &(m, n, k, w_elem, masked)) in [
            (37, 20, 13, Elem::F32, false),
            (130, 24, 16, Elem::F32, true),
            (70, 16, 64, Elem::F16, false),
        ]
        .iter()
        .enumerate()
        {
            if w_elem == Elem::F16 && !gpu.has_f16() {
                continue;
            }
            let mut r = StdRng::seed_from_u64(40 + seed as u64);
            let mut v = |len: usize, lo: f32, hi: f32| -> Vec<f32> {
                (0..len).map(|_| r.random_range(lo..hi)).collect()
            };
            // Rows: offset 3, spread 2, column 0 an outlier of about 30.
            let mut x = v(m * k, 1.0, 5.0);
            for row in x.chunks_mut(k) {
                row[0] *= 8.0;
            }
            let (w, b) = (v(k * n, -1.0, 1.0), v(n, -0.5, 0.5));
            let (gamma, beta) = (v(k, 0.5, 1.5), v(k, -0.5, 0.5));
            let c0 = v(m * n, -1.0, 1.0);
            // The fold: W' = diag(gamma) W, b' = b + beta.W, then the column sums of W' as stored.
            let w_fold: Vec<f32> = (0..k * n).map(|i| gamma[i / n] * w[i]).collect();
            let mut bias: Vec<f32> = (0..n)
                .map(|j| b[j] + (0..k).map(|kk| beta[kk] * w[kk * n + j]).sum::<f32>())
                .collect();
            let sums: Vec<f32> = (0..n)
                .map(|j| (0..k).map(|kk| stored(w_fold[kk * n + j], w_elem)).sum())
                .collect();
            bias.extend(&sums);
            let (xt, wt, biast) = (
                upload(&x),
                GpuTensor::from_f32(gpu, "w", &w_fold, w_elem),
                upload(&bias),
            );
            // Packed live rows: every third row is masked.
            let live: Vec<u32> = (0..m as u32).filter(|r| r % 3 != 1).collect();
            let mut map = vec![live.len() as u32];
            map.extend(&live);
            let map_t = GpuTensor::from_slice(gpu, "map", &map[..]);
            // Reference: LayerNorm in f64, then the product with W (as stored, scaled back).
            let normed: Vec<f64> = x
                .chunks(k)
                .flat_map(|row| {
                    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
                    let var =
                        row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k as f64;
                    let rstd = 1.0 / (var + eps as f64).sqrt();
                    row.iter()
                        .map(move |&v| (v as f64 - mean) * rstd)
                        .collect::<Vec<_>>()
                })
                .collect();
            for (act, acc) in [
                (Activation::Gelu, false),
                (Activation::QuickGelu, false),
                (Activation::GeluTanh, false),
                (Activation::None, true),
            ] {
                let ct = upload(&c0);
                let g = Gemm {
                    bias: Some(&biast),
                    activation: act,
                    accumulate: acc,
                    kernel: Some(kernel),
                    norm: Some(eps),
                    live: masked.then_some(LiveRows::Packed { map: &map_t }),
                    ..Gemm::new(m, n, k)
                };
                let step = kernels()
                    .gemm(
                        "norm gemm test",
                        MatView::rows(&xt, k),
                        MatView::rows(&wt, n),
                        MatView::rows(&ct, n),
                        g,
                    )
                    .unwrap();
                run([step]);
                let got = ct.read_f32(gpu).await.expect("readback");
                let mut worst = 0.0f64;
                for i in 0..m {
                    let is_live = !masked || i % 3 != 1;
                    for j in 0..n {
                        let idx = i * n + j;
                        if !is_live {
                            assert_eq!(got[idx], c0[idx], "{kernel}: wrote masked row {i}");
                            continue;
                        }
                        let mut s = b[j] as f64;
                        for kk in 0..k {
                            // LN(x) W + b with gamma, beta: (normed * gamma + beta) . W
                            let wk = stored(w_fold[kk * n + j], w_elem) as f64 / gamma[kk] as f64;
                            s += (normed[i * k + kk] * gamma[kk] as f64 + beta[kk] as f64) * wk;
                        }
                        s = activate(s, act);
                        if acc {
                            s += c0[idx] as f64;
                        }
                        worst = worst.max((got[idx] as f64 - s).abs() / s.abs().max(1.0));
                    }
                }
                let tolerance = if w_elem == Elem::F16 { 2e-3 } else { 5e-5 };
                assert!(
                    worst < tolerance,
                    "{kernel} m{m} n{n} k{k} {w_elem:?} masked {masked} {act:?} acc {acc}: error {worst:e}"
                );
            }
        }
    }
}

/// The residual from another buffer (`Gemm::residual`, after a pruning step): every kernel writes
/// C = residual + A.B + bias over C's old values, on all rows and on packed live rows.
async fn gemm_variants_add_a_residual_from_another_buffer() {
    let gpu = gpu();
    let (m, n, k) = (70, 21, 16);
    let mut r = StdRng::seed_from_u64(77);
    let mut v = |len: usize| -> Vec<f32> { (0..len).map(|_| r.random_range(-1.0..1.0)).collect() };
    let (a, b, bias, res, c0) = (v(m * k), v(k * n), v(n), v(m * n), v(m * n));
    let (at, bt, biast, rest) = (upload(&a), upload(&b), upload(&bias), upload(&res));
    let live: Vec<u32> = (0..m as u32).filter(|r| r % 4 != 2).collect();
    let mut map = vec![live.len() as u32];
    map.extend(&live);
    let map_t = GpuTensor::from_slice(gpu, "map", &map[..]);
    for kernel in all_kernels() {
        for masked in [false, true] {
            let ct = upload(&c0);
            let g = Gemm {
                bias: Some(&biast),
                residual: Some(&rest),
                kernel: Some(kernel),
                live: masked.then_some(LiveRows::Packed { map: &map_t }),
                ..Gemm::new(m, n, k)
            };
            let step = kernels()
                .gemm(
                    "residual test",
                    MatView::rows(&at, k),
                    MatView::rows(&bt, n),
                    MatView::rows(&ct, n),
                    g,
                )
                .unwrap();
            run([step]);
            let got = ct.read_f32(gpu).await.expect("readback");
            for i in 0..m {
                for j in 0..n {
                    let idx = i * n + j;
                    if masked && i % 4 == 2 {
                        assert_eq!(got[idx], c0[idx], "{kernel}: wrote masked row {i}");
                        continue;
                    }
                    let dot: f64 = (0..k)
                        .map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64)
                        .sum();
                    let want = res[idx] as f64 + dot + bias[j] as f64;
                    assert!(
                        (got[idx] as f64 - want).abs() < 1e-5,
                        "{kernel} masked {masked} ({i}, {j}): {} against {want}",
                        got[idx]
                    );
                }
            }
        }
    }
}

gpu_tests!(
    gemm_variants_on_linear_shapes,
    gemm_variants_add_a_residual_from_another_buffer,
    gemm_variants_with_a_folded_layernorm,
    gemm_variants_skip_masked_rows,
    both_tiled_gemm_variants_validate_within_webgpu_limits,
    gemm_variants_with_f16_storage,
    gemm_variants_on_strided_and_batched_views,
    every_generated_gemm_variant_validates_within_webgpu_limits,
);

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn the_library_choice_is_tuned_and_used_native() {
    pollster::block_on(the_library_choice_is_tuned_and_used())
}
