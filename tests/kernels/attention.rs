//! The fused attention kernel against a CPU reference (f64): odd token counts, several head sizes,
//! ToMe's log-size bias and masked keys; and the model choosing it only where no hook reads the
//! attention probabilities.

#[cfg(not(target_arch = "wasm32"))]
use crate::common::gpu;
use crate::common::{kernels, read, run, upload, upload_u32};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroprune::gpu::kernels::{attention_source, AttentionBias};
use zeroprune::gpu::Kernels;

/// `out[b, i, h*dh..]` of softmax(Q K^T * scale + log size) V over the first `valid[b]` keys.
#[allow(clippy::too_many_arguments)]
fn reference(
    qkv: &[f32],
    (b, n, d, h): (usize, usize, usize, usize),
    scale: f64,
    sizes: Option<&[f32]>,
    valid: Option<&[u32]>,
) -> Vec<f64> {
    let dh = d / h;
    let mut out = vec![0.0; b * n * d];
    for bi in 0..b {
        let keys = valid.map_or(n, |v| (v[bi] as usize).clamp(1, n));
        for hi in 0..h {
            for i in 0..n {
                let q = |t: usize| qkv[(bi * n + i) * 3 * d + hi * dh + t] as f64;
                let logits: Vec<f64> = (0..keys)
                    .map(|j| {
                        let k = |t: usize| qkv[(bi * n + j) * 3 * d + d + hi * dh + t] as f64;
                        let mut s = (0..dh).map(|t| q(t) * k(t)).sum::<f64>() * scale;
                        if let Some(sz) = sizes {
                            s += (sz[bi * n + j] as f64).ln();
                        }
                        s
                    })
                    .collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = logits.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                for t in 0..dh {
                    let v: f64 = (0..keys)
                        .map(|j| e[j] * qkv[(bi * n + j) * 3 * d + 2 * d + hi * dh + t] as f64)
                        .sum();
                    out[(bi * n + i) * d + hi * dh + t] = v / sum;
                }
            }
        }
    }
    out
}

async fn case(
    seed: u64,
    shape: (usize, usize, usize, usize),
    log_size: bool,
    masked: bool,
    mag: f32,
) {
    let (b, n, d, h) = shape;
    let mut r = StdRng::seed_from_u64(seed);
    let qkv: Vec<f32> = (0..b * n * 3 * d)
        .map(|_| r.random_range(-mag..mag))
        .collect();
    let sizes: Vec<f32> = (0..b * n).map(|_| r.random_range(1.0..4.0)).collect();
    let valid: Vec<u32> = (0..b).map(|_| r.random_range(1..=n as u32)).collect();
    let (qt, st, vt) = (upload(&qkv), upload(&sizes), upload_u32(&valid));
    let out = upload(&vec![7.0f32; b * n * d]);
    let scale = 1.0 / ((d / h) as f32).sqrt();
    let bias = AttentionBias {
        log_size: log_size.then_some(&st),
        valid: masked.then_some(&vt),
    };
    run([kernels()
        .attention("attention test", &qt, &out, shape, scale, bias)
        .unwrap()]);
    let got = read(&out).await;
    let want = reference(
        &qkv,
        shape,
        scale as f64,
        log_size.then_some(&sizes[..]),
        masked.then_some(&valid[..]),
    );
    // Masked queries are not computed: their rows keep the 7.0 the buffer held.
    let live = |idx: usize| !masked || (idx / d) % n < valid[idx / (n * d)] as usize;
    for (idx, &g) in got.iter().enumerate() {
        if !live(idx) {
            assert_eq!(
                g, 7.0,
                "shape {shape:?}: a masked query's output at {idx} was written"
            );
        }
    }
    let scale_v = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(i, _)| live(*i))
        .fold(0.0f64, |m, (_, (&g, &w))| m.max((g as f64 - w).abs()))
        / scale_v;
    assert!(
        err < 2e-5,
        "shape {shape:?} log_size {log_size} masked {masked}: error {err:e}"
    );
}

async fn fused_attention_matches_the_reference() {
    // (batch, tokens, width, heads): DeiT-Tiny-like, odd counts past the workgroup and key block, one token.
    let shapes = [
        (2, 197, 192, 3),
        (1, 33, 32, 4),
        (3, 9, 24, 2),
        (1, 1, 16, 2),
        (2, 70, 16, 4),
    ];
    for (i, &s) in shapes.iter().enumerate() {
        case(i as u64, s, false, false, 1.0).await;
    }
    // Large logits: the online softmax must not overflow.
    case(20, (1, 50, 32, 2), false, false, 8.0).await;
}

async fn fused_attention_with_log_size_bias_and_masked_keys() {
    for (i, &(log_size, masked)) in [(true, false), (false, true), (true, true)]
        .iter()
        .enumerate()
    {
        case(30 + i as u64, (3, 41, 32, 2), log_size, masked, 1.0).await;
        case(40 + i as u64, (2, 197, 192, 3), log_size, masked, 1.0).await;
    }
}

async fn fused_attention_rejects_unsupported_heads() {
    assert!(!Kernels::attention_fits(30, 5)); // head dim 6
    assert!(Kernels::attention_fits(192, 3));
    let t = upload(&vec![0f32; 64]);
    assert!(kernels()
        .attention("bad", &t, &t, (1, 2, 30, 5), 1.0, AttentionBias::default())
        .is_err());
}

async fn attention_template_validates_within_webgpu_limits() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let limits = wgpu::Limits::default();
    for dh in [4, 8, 16, 64, 128] {
        let src = attention_source(dh);
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("dh {dh}: {}", e.emit_to_string(&src)));
        Validator::new(ValidationFlags::all(), Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("dh {dh}: {}", e.emit_to_string(&src)));
        let ep = &module.entry_points[0];
        let [x, y, z] = ep.workgroup_size;
        assert!(x * y * z <= limits.max_compute_invocations_per_workgroup);
        assert!(module
            .global_variables
            .iter()
            .all(|(_, g)| g.space != naga::AddressSpace::WorkGroup));
        let (_, u) = module
            .global_variables
            .iter()
            .find(|(_, g)| g.space == naga::AddressSpace::Uniform)
            .unwrap();
        assert_eq!(module.types[u.ty].inner.size(module.to_ctx()), 32);
        assert_eq!(u.binding.as_ref().unwrap().binding, 4);
    }
}

// Native only: it measures with blocking waits / loads a model from disk.
#[cfg(not(target_arch = "wasm32"))]
async fn only_blocks_whose_probabilities_are_read_keep_the_unfused_attention() {
    use zeroprune::prune::{Policy, PruneOptions, Pruning, ScheduleSpec};
    let w = zeroprune::ModelWeights::load(&crate::common::fixture("tiny-timm")).unwrap();
    let mut s = zeroprune::Session::new(gpu(), &w).unwrap();
    // Session::new measured which attention is faster here; this test is about the fused one.
    let measured = s.kernel_choice();
    let fused = |on: bool| zeroprune::gpu::KernelChoice {
        fused_attention: on,
        ..measured
    };
    s.set_kernel_choice(fused(true));
    let has = |labels: &[String], l: &str| labels.iter().any(|x| x == l);
    let dense = s.step_labels(2, &Pruning::dense()).unwrap();
    assert!(has(&dense, "block0.attention") && has(&dense, "block1.attention"));
    assert!(!dense.iter().any(|l| l.contains("softmax")));
    let spec = ScheduleSpec::parse_keep("0.6@0").unwrap();
    for (policy, unfused) in [
        (Policy::named("zero-tprune").unwrap(), true),
        (Policy::named("evit").unwrap(), true),
        (Policy::named("tome").unwrap(), false),
        (Policy::named("random").unwrap(), false),
    ] {
        let p =
            Pruning::resolve(policy, &spec, PruneOptions::default(), &w.config.geometry()).unwrap();
        let labels = s.step_labels(2, &p).unwrap();
        assert_eq!(has(&labels, "block0.softmax"), unfused, "{policy:?}");
        assert_eq!(has(&labels, "block0.attention"), !unfused, "{policy:?}");
        assert!(has(&labels, "block1.attention"), "{policy:?}");
    }
    // Switched off, every block runs scores, softmax and context.
    s.set_kernel_choice(fused(false));
    let labels = s.step_labels(2, &Pruning::dense()).unwrap();
    assert!(!labels.iter().any(|l| l.ends_with(".attention")));
    assert!(has(&labels, "block1.softmax"));
}

gpu_tests!(
    fused_attention_matches_the_reference,
    fused_attention_with_log_size_bias_and_masked_keys,
    fused_attention_rejects_unsupported_heads,
    attention_template_validates_within_webgpu_limits,
);

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn only_blocks_whose_probabilities_are_read_keep_the_unfused_attention_native() {
    pollster::block_on(only_blocks_whose_probabilities_are_read_keep_the_unfused_attention())
}
