//! Subgroup row reductions (`KernelChoice::subgroups`): softmax (with ToMe's log-size bias and
//! masked keys) and LayerNorm on subgroup operations against f64 CPU references, the same
//! against the portable workgroup path, and naga validation of every subgroup form. The portable
//! path stays the default until the per-adapter measurement picks the other.

use crate::common::{gpu, run};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use zeroprune::gpu::kernels::{AttentionBias, RowView, FAMILIES};
use zeroprune::gpu::{GpuTensor, Kernels};

fn values(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = StdRng::seed_from_u64(seed);
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// A kernel library of its own (the choice is per library), with subgroups on or off.
fn library(subgroups: bool) -> Option<Kernels> {
    gpu().reduce_subgroup_width()?;
    let k = Kernels::new(gpu());
    k.set_subgroups(subgroups);
    Some(k)
}

/// Softmax of `rows` rows of `cols` (rows per image `per`), keys `j >= valid[image]` masked and
/// `log(size[image, j])` added: the f64 reference.
fn softmax_ref(x: &[f32], cols: usize, per: usize, sizes: &[f32], valid: &[u32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(x.len());
    for (r, row) in x.chunks(cols).enumerate() {
        let img = r / per;
        let v = (valid[img] as usize).clamp(1, cols);
        let logit = |j: usize| row[j] as f64 + (sizes[img * cols + j] as f64).ln();
        let m = (0..v).map(logit).fold(f64::MIN, f64::max);
        let s: f64 = (0..v).map(|j| (logit(j) - m).exp()).sum();
        out.extend((0..cols).map(|j| if j < v { (logit(j) - m).exp() / s } else { 0.0 }));
    }
    out
}

#[test]
fn subgroup_softmax_matches_the_reference_and_the_portable_path() {
    let Some(sub) = library(true) else {
        eprintln!("skipped: no subgroups usable on this adapter");
        return;
    };
    let portable = library(false).unwrap();
    let (images, per, cols) = (2, 6, 70);
    let x = values(1, images * per * cols, -8.0, 8.0);
    let sizes = values(2, images * cols, 1.0, 4.0);
    let valid = [45u32, 70];
    let want = softmax_ref(&x, cols, per, &sizes, &valid);
    let mut outs = vec![];
    for k in [&sub, &portable] {
        let t = GpuTensor::from_slice(gpu(), "x", &x);
        let s = GpuTensor::from_slice(gpu(), "sizes", &sizes);
        let v = GpuTensor::from_slice(gpu(), "valid", &valid);
        let bias = AttentionBias {
            log_size: Some(&s),
            valid: Some(&v),
        };
        let step = k
            .softmax_biased("softmax", &t, images * per, cols, cols, per, bias)
            .unwrap();
        run([step]);
        outs.push(t.read_blocking::<f32>(gpu()).unwrap());
    }
    for (which, got) in ["subgroup", "portable"].iter().zip(&outs) {
        let err = got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max);
        assert!(
            err < 1e-6,
            "{which} softmax differs from the reference by {err}"
        );
    }
    // Masked keys are exactly zero on both paths.
    assert!(outs[0][45..70].iter().all(|&v| v == 0.0));
}

#[test]
fn subgroup_layernorm_matches_the_reference() {
    let Some(sub) = library(true) else {
        eprintln!("skipped: no subgroups usable on this adapter");
        return;
    };
    // Widths below, at and above the subgroup, and odd; rows with a large mean.
    for (seed, d) in [(3u64, 5usize), (4, 8), (5, 192), (6, 77)] {
        let rows = 13;
        let x: Vec<f32> = values(seed, rows * d, -2.0, 2.0)
            .iter()
            .map(|v| v + 100.0)
            .collect();
        let gamma = values(seed + 10, d, 0.5, 1.5);
        let beta = values(seed + 20, d, -0.5, 0.5);
        let xt = GpuTensor::from_slice(gpu(), "x", &x);
        let yt = GpuTensor::zeros(gpu(), "y", rows * d);
        let (g, b) = (
            GpuTensor::from_slice(gpu(), "gamma", &gamma),
            GpuTensor::from_slice(gpu(), "beta", &beta),
        );
        let step = sub
            .layernorm(
                "ln",
                RowView::dense(&xt, d),
                RowView::dense(&yt, d),
                rows,
                d,
                &g,
                &b,
                1e-5,
            )
            .unwrap();
        run([step]);
        let got = yt.read_blocking::<f32>(gpu()).unwrap();
        for (r, row) in x.chunks(d).enumerate() {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let want =
                    (row[j] as f64 - mean) / (var + 1e-5).sqrt() * gamma[j] as f64 + beta[j] as f64;
                let g = got[r * d + j] as f64;
                assert!(
                    (g - want).abs() < 2e-4,
                    "d {d} row {r} col {j}: {g} vs {want}"
                );
            }
        }
    }
}

#[test]
fn every_subgroup_form_validates_in_naga() {
    use naga::valid::{Capabilities, ValidationFlags, Validator};
    let mut names = vec![];
    for family in FAMILIES {
        for width in [4, 8, 32, 64] {
            let Some(src) = family.wgsl_subgroup(width) else {
                continue;
            };
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{}: {}", family.name, e.emit_to_string(&src)));
            Validator::new(ValidationFlags::all(), Capabilities::SUBGROUP)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{} x{width}: {}", family.name, e.emit_to_string(&src)));
            // One subgroup per workgroup: no workgroup memory, no barrier.
            assert!(!src.contains("workgroupBarrier"), "{}", family.name);
            assert_eq!(module.entry_points[0].workgroup_size, [width, 1, 1]);
            names.push(family.name);
        }
    }
    names.dedup();
    assert_eq!(names, ["softmax", "layernorm"]);
}
