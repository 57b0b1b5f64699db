//! Every pruning policy against the independent PyTorch reference (`tests/reference/prune_reference.py`,
//! written from `docs/pruning.md`): on the same models and inputs, the GPU keeps the same patch
//! tokens at every step and, with the same tokens, gives the same logits.
//! The real DeiT-Tiny cases run on the reference's own PIL-preprocessed tensor of their first image
//! (`tests/fixtures/deit-tiny-numpy-first8.safetensors`, `input0`), so they must match exactly too.

use std::path::Path;

use crate::common::{gpu, max_rel_err, read_tensor, repo};
use zeroprune::prune::{Policy, PruneOptions, Pruning, ScheduleSpec};
use zeroprune::{ModelWeights, Session};

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    model: String,
    policy: String,
    args: Vec<String>,
    file: String,
    images: Option<Vec<String>>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/prune/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The reference's CLI arguments as a schedule and options.
fn pruning(case: &Case, w: &ModelWeights) -> Pruning {
    let policy: Policy = case.policy.parse().unwrap();
    let mut spec = ScheduleSpec::Default;
    let mut options = PruneOptions::default();
    let (mut flops, mut at) = (None, None);
    for pair in case.args.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair[1].as_str());
        match k {
            "--keep" => spec = ScheduleSpec::parse_keep(v).unwrap(),
            "--tokens" => spec = ScheduleSpec::parse_tokens(v).unwrap(),
            "--threshold" => spec = ScheduleSpec::parse_threshold(v).unwrap(),
            "--flops" => flops = Some(v.parse::<f64>().unwrap()),
            "--at" => at = Some(v.to_string()),
            "--sim" => options.sim = v.parse().unwrap(),
            "--heads" => options.heads = v.parse().unwrap(),
            "--seed" => options.seed = v.parse().unwrap(),
            "--iters" => options.iters = Some(v.parse().unwrap()),
            "--protect" => options.protect = v.parse().unwrap(),
            other => panic!("{}: unknown reference argument {other}", case.name),
        }
    }
    if let Some(f) = flops {
        spec = ScheduleSpec::flops(f, at.as_deref()).unwrap();
    }
    Pruning::resolve(policy, &spec, options, &w.config.geometry()).unwrap()
}

/// `kept.s` rows of the fixture: patch indices, -1 padded.
fn reference_kept(file: &Path, steps: usize) -> Vec<Vec<Vec<u32>>> {
    let bytes = std::fs::read(file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    (0..steps)
        .map(|s| {
            let t = st.tensor(&format!("kept.{s}")).unwrap();
            let (b, k) = (t.shape()[0], t.shape()[1]);
            let v: Vec<i32> = t
                .data()
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (0..b)
                .map(|i| {
                    v[i * k..(i + 1) * k]
                        .iter()
                        .filter(|&&x| x >= 0)
                        .map(|&x| x as u32)
                        .collect()
                })
                .collect()
        })
        .collect()
}

fn run_case(case: &Case) -> (usize, usize) {
    let dir = repo().join(&case.model);
    let weights = ModelWeights::load(&dir).unwrap();
    // Real cases: the first listed image, as the NumPy reference preprocessed it with PIL.
    let (input, images) = match &case.images {
        None => {
            let (shape, input) = read_tensor(&dir.join("reference.safetensors"), "input");
            (input, shape[0])
        }
        Some(files) => {
            let first8 = repo().join("tests/fixtures/deit-tiny-numpy-first8.safetensors");
            let tsv =
                std::fs::read_to_string(repo().join("tests/fixtures/deit-tiny-numpy-resize.tsv"))
                    .unwrap();
            let first = tsv.lines().next().unwrap().split('\t').next().unwrap();
            assert!(
                files[0].ends_with(first),
                "input0 is {first}, the case's first image {}",
                files[0]
            );
            (read_tensor(&first8, "input0").1, 1)
        }
    };
    let p = pruning(case, &weights);
    let file = repo().join(&case.file);
    let want_kept = reference_kept(&file, p.steps.len());
    let (shape, mut want_logits) = read_tensor(&file, "logits");
    want_logits.truncate(images * shape[1]);
    let mut session = Session::new(gpu(), &weights).unwrap();
    let out = session.run(&input, &p).unwrap().items;

    let (mut same, mut total) = (0, 0);
    for (b, o) in out.iter().enumerate() {
        for (s, got) in o.kept.iter().enumerate() {
            let want = &want_kept[s][b];
            let common = got.iter().filter(|t| want.contains(t)).count();
            same += common;
            total += want.len().max(got.len());
            assert_eq!(
                got, want,
                "{}: image {b} step {s} ({:?}) keeps different tokens",
                case.name, p.steps[s]
            );
        }
    }
    let got: Vec<f32> = out.iter().flat_map(|o| o.logits.clone()).collect();
    let err = max_rel_err(&got, &want_logits);
    eprintln!(
        "{:<22} {:<40} tokens {same}/{total} logits err {err:.1e}",
        case.name,
        p.describe()
    );
    assert!(err < 1e-4, "{}: logits differ by {err}", case.name);
    (same, total)
}

#[test]
fn tiny_models_keep_exactly_the_reference_tokens() {
    let cases: Vec<Case> = cases().into_iter().filter(|c| c.images.is_none()).collect();
    assert!(
        cases.len() >= 20,
        "the fixture lists {} tiny cases",
        cases.len()
    );
    for &policy in Policy::all() {
        assert!(
            cases.iter().any(|c| c.policy == policy.name()),
            "no tiny case for {policy}"
        );
    }
    for case in &cases {
        run_case(case);
    }
}

#[test]
fn deit_tiny_keeps_the_reference_tokens_on_real_images() {
    let cases: Vec<Case> = cases().into_iter().filter(|c| c.images.is_some()).collect();
    if !crate::common::shared().join("models").exists() {
        eprintln!("../shared is absent: skipping the real-model cases");
        return;
    }
    assert_eq!(cases.len(), Policy::all().len(), "one real case per policy");
    for case in &cases {
        run_case(case);
    }
}
