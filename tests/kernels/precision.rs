//! f16 storage (`--precision f16`): the LayerNorm and fused-attention outputs stored as halves
//! are the f32 results rounded once; a kernel refuses an f16 buffer where its shader cannot take
//! one; the model's f16 session keeps its weights and GEMM-only activations as halves and agrees
//! with the f32 session; every family's f16 form validates in naga; `Precision` parses and
//! resolves. (The GEMM's f16 forms are in tests/kernels/gemm.rs, the whole model against PyTorch
//! and NumPy in tests/models/model_reference.rs and tests/models/real_model.rs.)

use crate::common::{gpu, kernels, run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroprune::gpu::kernel::Elem;
use zeroprune::gpu::kernels::{with_halves, AttentionBias, RowView, FAMILIES};
use zeroprune::gpu::{GpuTensor, KernelChoice};
use zeroprune::model::random::random_model;
use zeroprune::model::Precision;
use zeroprune::prune::Pruning;
use zeroprune::{Mode, Run, Session};

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(-scale..scale)).collect()
}

/// Every value of `half` is `full` rounded to the nearest f16 (within half an f16 ulp).
fn is_rounded(what: &str, half: &[f32], full: &[f32]) {
    assert_eq!(half.len(), full.len(), "{what}");
    for (i, (&h, &f)) in half.iter().zip(full).enumerate() {
        let tol = f.abs() * 2f32.powi(-11) + 6e-8;
        assert!(
            (h - f).abs() <= tol,
            "{what}[{i}]: f16 {h} is not {f} rounded"
        );
    }
}

fn skip_without_f16() -> bool {
    if !gpu().has_f16() {
        eprintln!("skipped: the adapter has no shader-f16");
        return true;
    }
    false
}

#[test]
fn layernorm_stores_its_rows_as_halves() {
    if skip_without_f16() {
        return;
    }
    let (rows, d) = (37, 48);
    let x = GpuTensor::from_slice(gpu(), "x", &values(1, rows * d, 3.0));
    let gamma = GpuTensor::from_slice(gpu(), "gamma", &values(2, d, 2.0));
    let beta = GpuTensor::from_slice(gpu(), "beta", &values(3, d, 1.0));
    let mut out = vec![];
    for elem in [Elem::F32, Elem::F16] {
        let y = GpuTensor::zeros_of(gpu(), "y", rows * d, elem);
        let step = kernels()
            .layernorm(
                "ln",
                RowView::dense(&x, d),
                RowView::dense(&y, d),
                rows,
                d,
                &gamma,
                &beta,
                1e-6,
            )
            .unwrap();
        run([step]);
        out.push(y.read_f32_blocking(gpu()).unwrap());
    }
    is_rounded("layernorm", &out[1], &out[0]);
    assert!(out[0] != out[1], "f16 storage rounded nothing");
}

#[test]
fn fused_attention_stores_its_context_as_halves() {
    if skip_without_f16() {
        return;
    }
    let (b, n, h, dh) = (2, 29, 2, 8);
    let d = h * dh;
    let qkv = GpuTensor::from_slice(gpu(), "qkv", &values(4, b * n * 3 * d, 2.0));
    let mut out = vec![];
    for elem in [Elem::F32, Elem::F16] {
        let o = GpuTensor::zeros_of(gpu(), "out", b * n * d, elem);
        let step = kernels()
            .attention(
                "attention",
                &qkv,
                &o,
                (b, n, d, h),
                0.35,
                AttentionBias::default(),
            )
            .unwrap();
        run([step]);
        out.push(o.read_f32_blocking(gpu()).unwrap());
    }
    is_rounded("attention", &out[1], &out[0]);
}

#[test]
fn a_kernel_without_an_f16_form_refuses_halves() {
    if skip_without_f16() {
        return;
    }
    // Softmax keeps its rows in f32 (it feeds token scoring): no alias, so an error naming it.
    let x = GpuTensor::zeros_of(gpu(), "x", 64, Elem::F16);
    let Err(err) = kernels().softmax_rows("probs", &x, 4, 16, 16) else {
        panic!("an f16 buffer in an f32-only slot is refused");
    };
    let msg = err.to_string();
    assert!(msg.contains("cannot take an f16 buffer for `x`"), "{msg}");
    // The source transform itself: only declared aliases change, `enable f16;` comes first.
    let src = "alias T_a = f32;\nvar<private> v: T_a;".to_string();
    let out = with_halves(src.clone(), "k", &["a"]).unwrap();
    assert!(out.starts_with("enable f16;"));
    assert!(out.contains("alias T_a = f16;"));
    assert!(with_halves(src.clone(), "k", &["b"]).is_err());
    assert_eq!(with_halves(src.clone(), "k", &[]).unwrap(), src);
}

#[test]
fn every_f16_form_validates_in_naga() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let mut checked = 0;
    for family in FAMILIES {
        let src = family.wgsl();
        // Every slot the file declares an element alias for.
        let slots: Vec<&str> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix("alias T_"))
            .filter_map(|l| l.split_once(" = f32;").map(|(s, _)| s))
            .collect();
        if slots.is_empty() {
            continue;
        }
        let half = with_halves(src.clone(), family.name, &slots).unwrap();
        let module = naga::front::wgsl::parse_str(&half)
            .unwrap_or_else(|e| panic!("{}: {}", family.name, e.emit_to_string(&half)));
        Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{} (f16): {}", family.name, e.emit_to_string(&half)));
        checked += 1;
    }
    // matmul, gemm_tiled, gemm_rb, attention, layernorm.
    assert_eq!(checked, 5);
    let wide = zeroprune::gpu::kernels::gemm_tiled_source(true);
    let half = with_halves(wide, "gemm_tiled", &["a", "b", "c"]).unwrap();
    let module = naga::front::wgsl::parse_str(&half).unwrap();
    Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
        .validate(&module)
        .expect("the 128x128 tiled GEMM with f16 A, B and C");
    for (av, bv) in [(false, false), (true, true)] {
        let src = zeroprune::gpu::kernels::gemm_rb_source(4, 4, av, bv);
        let half = with_halves(src, "gemm_rb", &["a", "b", "c"]).unwrap();
        let module = naga::front::wgsl::parse_str(&half).unwrap();
        Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
            .validate(&module)
            .unwrap_or_else(|e| panic!("gemm_rb vec4 {av} (f16): {}", e.emit_to_string(&half)));
    }
}

#[test]
fn an_f16_session_stores_halves_and_agrees_with_f32() {
    if skip_without_f16() {
        return;
    }
    let w = random_model("deit-tiny").unwrap();
    let mut full = Session::with_precision(gpu(), &w, Precision::F32).unwrap();
    let mut half = Session::with_precision(gpu(), &w, Precision::F16).unwrap();
    assert_eq!(full.storage(), Elem::F32);
    assert_eq!(half.storage(), Elem::F16);
    let input = values(5, 2 * full.image_len(), 1.5);
    let dense = Pruning::dense();
    let a = full.run(&input, &dense).unwrap().logits();
    let b = half.run(&input, &dense).unwrap().logits();
    let err = crate::common::max_rel_err(&b, &a);
    eprintln!("random DeiT-Tiny, f16 against f32: max relative logit error {err:.2e}");
    assert!(err < 2e-2, "f16 logits differ from f32 by {err}");
    assert!(err > 0.0, "f16 storage changed nothing");
    // The debug twin reads the halves back: the attention context (it only feeds a GEMM) is f16,
    // the residual stream f32. The first qkv (LayerNorm folded in, f16 weights) sees the same input.
    let trace = half
        .run(&input, Run::new(&dense).mode(Mode::Debug))
        .unwrap()
        .trace
        .unwrap();
    let step = |label: &str| trace.iter().find(|s| s.label == label).unwrap();
    let context = trace
        .iter()
        .find(|s| s.label == "block0.context" || s.label == "block0.attention")
        .expect("the first block's attention (unfused or fused)");
    assert_eq!(context.outputs.last().unwrap().1, Elem::F16);
    assert_eq!(step("block0.fc2").outputs[0].1, Elem::F32);
    let qkv = step("block0.qkv").f32("c").unwrap();
    let full_trace = full
        .run(&input, Run::new(&dense).mode(Mode::Debug))
        .unwrap()
        .trace
        .unwrap();
    let want = full_trace
        .iter()
        .find(|s| s.label == "block0.qkv")
        .unwrap()
        .f32("c")
        .unwrap();
    let err = crate::common::max_rel_err(&qkv[..want.len()], &want);
    assert!(err < 2e-2, "block 0 qkv rows differ by {err}");
    // Pruned runs work on f16 storage too, with the same kept counts.
    let pruning = zeroprune::prune::PruneRequest {
        policy: Some("zero-tprune".into()),
        flops: Some(0.65),
        ..Default::default()
    }
    .resolve(&w.config.geometry())
    .unwrap();
    let pf = full.run(&input, &pruning).unwrap();
    let ph = half.run(&input, &pruning).unwrap();
    for (x, y) in pf.items.iter().zip(&ph.items) {
        let kx: Vec<usize> = x.kept.iter().map(Vec::len).collect();
        let ky: Vec<usize> = y.kept.iter().map(Vec::len).collect();
        assert_eq!(kx, ky);
    }
}

#[test]
fn precision_parses_and_resolves() {
    assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
    assert_eq!("auto".parse::<Precision>().unwrap(), Precision::Auto);
    let err = "half".parse::<Precision>().unwrap_err().to_string();
    assert!(
        err.contains("precision") && err.contains("f32, f16, auto"),
        "{err}"
    );
    let choice = |f16| KernelChoice {
        f16,
        ..KernelChoice::guess(gpu())
    };
    assert_eq!(
        Precision::F32.storage(gpu(), choice(true)).unwrap(),
        Elem::F32
    );
    // auto follows the measurement, and only where the adapter has f16.
    assert_eq!(
        Precision::Auto.storage(gpu(), choice(false)).unwrap(),
        Elem::F32
    );
    let auto_f16 = Precision::Auto.storage(gpu(), choice(true)).unwrap();
    let forced = Precision::F16.storage(gpu(), choice(false));
    if gpu().has_f16() {
        assert_eq!(auto_f16, Elem::F16);
        assert_eq!(forced.unwrap(), Elem::F16);
    } else {
        assert_eq!(auto_f16, Elem::F32);
        let msg = forced.unwrap_err().to_string();
        assert!(msg.contains("shader-f16"), "{msg}");
    }
}

#[test]
fn f16_refuses_a_weight_beyond_its_range_naming_the_layer() {
    if skip_without_f16() {
        return;
    }
    let mut w = random_model("deit-tiny").unwrap();
    w.blocks[3].fc2.w[17] = 70000.0;
    let err = match Session::with_precision(gpu(), &w, Precision::F16) {
        Ok(_) => panic!("a weight of 70000 cannot be stored as f16"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("block3.fc2 weight") && err.contains("index 17") && err.contains("f32"),
        "{err}"
    );
    // f32 takes it.
    assert!(Session::with_precision(gpu(), &w, Precision::F32).is_ok());
}
