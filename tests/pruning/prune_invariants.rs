//! Properties every pruning policy must have, independent of any reference: keeping everything
//! changes nothing, the kept lists are sorted, distinct, inside the grid and of the scheduled size,
//! and a schedule's FLOPs shrink as it keeps fewer tokens.

use crate::common::{fixture, gpu, max_rel_err, read_tensor};
use zeroprune::prune::{KeepRule, Policy, PruneOptions, Pruning, ScheduleSpec};
use zeroprune::{ModelWeights, Session};

fn model(name: &str) -> (ModelWeights, Vec<f32>) {
    let dir = fixture(name);
    let weights = ModelWeights::load(&dir).unwrap();
    let (_, input) = read_tensor(&dir.join("reference.safetensors"), "input");
    (weights, input)
}

fn resolve(w: &ModelWeights, policy: Policy, spec: ScheduleSpec) -> Pruning {
    Pruning::resolve(policy, &spec, PruneOptions::default(), &w.config.geometry()).unwrap()
}

/// Every policy that keeps a count known in advance (`--keep`), `none` aside.
fn counted() -> impl Iterator<Item = Policy> {
    Policy::all()
        .iter()
        .copied()
        .filter(|p| !p.is_none() && p.def().keep_rule() == KeepRule::Count)
}

/// Every policy whose count is decided per image, each at a threshold of its own units that
/// removes some tokens of the tiny models.
fn per_image() -> Vec<(Policy, ScheduleSpec)> {
    [
        ("threshold", "1.0@0,1"),
        ("zero-tprune-adaptive", "0.6@0,1"),
    ]
    .map(|(p, t)| {
        let policy = Policy::named(p).unwrap();
        assert_eq!(policy.def().keep_rule(), KeepRule::Threshold, "{p}");
        (policy, ScheduleSpec::parse_threshold(t).unwrap())
    })
    .to_vec()
}

/// Per-image counts: each step keeps at least one patch and at most what entered it.
fn check_per_image_counts(what: &str, kept: &[Vec<u32>], patches: usize) {
    let mut entering = patches;
    for k in kept {
        assert!(!k.is_empty() && k.len() <= entering, "{what}: {kept:?}");
        assert!(k.windows(2).all(|p| p[0] < p[1]), "{what}: {k:?}");
        assert!(k.iter().all(|&t| (t as usize) < patches), "{what}: {k:?}");
        entering = k.len();
    }
}

/// Whether any image lost a patch token: a threshold that removes nothing would test nothing.
fn removes_some(out: &[zeroprune::ImageOutput], patches: usize) -> bool {
    out.iter()
        .any(|o| o.kept.last().is_some_and(|k| k.len() < patches))
}

/// The policies with a fixed keep count.
fn fixed_count_policies() -> Vec<Policy> {
    ["zero-tprune", "wpr", "tome", "evit", "random"]
        .map(|p| Policy::named(p).unwrap())
        .to_vec()
}

#[test]
fn keeping_every_token_changes_nothing() {
    for name in [
        "tiny-timm",
        "tiny-timm-distilled",
        "tiny-timm-reg",
        "tiny-timm-gap",
    ] {
        let (w, input) = model(name);
        let mut s = Session::new(gpu(), &w).unwrap();
        let dense = s.run(&input, &Pruning::dense()).unwrap().logits();
        let last = w.config.depth - 1;
        // EViT reads the class token's attention: a model without one refuses it (below).
        let policies = fixed_count_policies()
            .into_iter()
            .filter(|p| w.config.class_token || p.name() != "evit");
        for policy in policies {
            let spec = ScheduleSpec::parse_keep(&format!("1.0@0,{last}")).unwrap();
            let out = s.run(&input, &resolve(&w, policy, spec)).unwrap().items;
            let got: Vec<f32> = out.iter().flat_map(|o| o.logits.clone()).collect();
            let err = max_rel_err(&got, &dense);
            assert!(
                err < 1e-5,
                "{name} {policy}: keep-all differs from dense by {err}"
            );
            let all: Vec<u32> = (0..w.config.num_patches() as u32).collect();
            for o in &out {
                assert_eq!(o.kept, vec![all.clone(), all.clone()], "{name} {policy}");
            }
        }
        let spec = ScheduleSpec::parse_threshold("0@0,1").unwrap();
        let threshold = resolve(&w, Policy::named("threshold").unwrap(), spec);
        let got = s.run(&input, &threshold).unwrap().logits();
        assert!(max_rel_err(&got, &dense) < 1e-5, "{name} threshold 0");
    }
}

/// Register tokens are prefix tokens: protected like CLS, never counted among the patches a step
/// keeps, and every policy (merging ones too) runs on a model that has them.
#[test]
fn registers_are_never_pruned() {
    let (w, input) = model("tiny-timm-reg");
    assert_eq!(w.config.num_patches(), 9);
    let mut s = Session::new(gpu(), &w).unwrap();
    for (policy, spec) in per_image() {
        let out = s.run(&input, &resolve(&w, policy, spec)).unwrap().items;
        for o in &out {
            assert!(o.logits.iter().all(|v| v.is_finite()), "{policy}");
            check_per_image_counts(policy.name(), &o.kept, 9);
        }
        assert!(removes_some(&out, 9), "{policy} removed nothing");
    }
    for policy in counted() {
        let spec = ScheduleSpec::parse_keep("0.7@0;0.7@1").unwrap();
        let pruning = resolve(&w, policy, spec);
        let out = s.run(&input, &pruning).unwrap().items;
        for o in &out {
            assert!(o.logits.iter().all(|v| v.is_finite()), "{policy}");
            let sizes: Vec<usize> = o.kept.iter().map(Vec::len).collect();
            assert_eq!(
                sizes,
                vec![7, 5],
                "{policy}: ceil(0.7 * 9) patches, then ceil(0.7 * 7)"
            );
            assert!(
                o.kept.iter().flatten().all(|&k| k < 9),
                "{policy}: {:?}",
                o.kept
            );
        }
    }
}

/// A pruned embedding is finite and still points the dense one's way.
fn check_embedding(what: &str, pruned: &[f32], dense: &[f32]) {
    assert!(pruned.iter().all(|v| v.is_finite()), "{what}");
    assert!(
        zeroprune::eval::stats::cosine(pruned, dense) > 0.0,
        "{what}"
    );
}

/// Without a class token every patch may be pruned or merged, the average over what is left is
/// the head's input, and EViT (which reads the class token's attention) is refused by name.
#[test]
fn a_model_without_a_class_token_prunes_every_token() {
    // Average pooling (timm) and SigLIP's attention pooling, both over what is left.
    for name in ["tiny-timm-gap", "tiny-hf-siglip"] {
        let (w, input) = model(name);
        assert_eq!(w.config.num_patches(), 16);
        let mut s = Session::new(gpu(), &w).unwrap();
        let dense: Vec<Vec<f32>> = s
            .run(&input, &Pruning::dense())
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.embedding)
            .collect();
        for (policy, spec) in per_image() {
            let out = s.run(&input, &resolve(&w, policy, spec)).unwrap().items;
            for (o, d) in out.iter().zip(&dense) {
                check_embedding(&format!("{name} {policy}"), &o.embedding, d);
                check_per_image_counts(&format!("{name} {policy}"), &o.kept, 16);
            }
            assert!(removes_some(&out, 16), "{name} {policy} removed nothing");
        }
        for policy in counted().filter(|p| p.name() != "evit") {
            let spec = ScheduleSpec::parse_keep("0.7@0;0.7@1").unwrap();
            let out = s.run(&input, &resolve(&w, policy, spec)).unwrap().items;
            for (o, d) in out.iter().zip(&dense) {
                check_embedding(&format!("{name} {policy}"), &o.embedding, d);
                let sizes: Vec<usize> = o.kept.iter().map(Vec::len).collect();
                assert_eq!(
                    sizes,
                    vec![12, 9],
                    "{name} {policy}: ceil(0.7 * 16), ceil(0.7 * 12)"
                );
            }
        }
        let spec = ScheduleSpec::parse_keep("0.7@0").unwrap();
        let evit = resolve(&w, Policy::named("evit").unwrap(), spec);
        let e = s.run(&input, &evit).unwrap_err().to_string();
        assert!(e.contains("class token"), "{name}: {e}");
    }
}

#[test]
fn kept_lists_follow_the_schedule() {
    let (w, input) = model("tiny-timm");
    let patches = w.config.num_patches();
    let mut s = Session::new(gpu(), &w).unwrap();
    let dense = s.run(&input, &Pruning::dense()).unwrap().logits();
    for policy in fixed_count_policies() {
        let spec = ScheduleSpec::parse_keep("0.6@0;0.7@1").unwrap();
        let pruning = resolve(&w, policy, spec);
        let want: Vec<usize> = pruning.steps.iter().map(|s| s.tokens_out()).collect();
        assert_eq!(want, vec![15, 11], "ceil(0.6 * 25), ceil(0.7 * 15)");
        let out = s.run(&input, &pruning).unwrap().items;
        for o in &out {
            assert!(o.logits.iter().all(|v| v.is_finite()), "{policy}");
            for (step, kept) in o.kept.iter().enumerate() {
                assert_eq!(kept.len(), want[step], "{policy} step {step}");
                assert!(kept.windows(2).all(|p| p[0] < p[1]), "{policy}: {kept:?}");
                assert!(kept.iter().all(|&k| (k as usize) < patches));
                if step > 0 {
                    assert!(kept.iter().all(|k| o.kept[step - 1].contains(k)));
                }
            }
        }
        let got: Vec<f32> = out.iter().flat_map(|o| o.logits.clone()).collect();
        assert!(
            max_rel_err(&got, &dense) > 1e-4,
            "{policy}: pruning had no effect"
        );
    }
}

#[test]
fn random_depends_on_the_seed_and_nothing_else() {
    let (w, input) = model("tiny-timm");
    let mut s = Session::new(gpu(), &w).unwrap();
    let run = |s: &mut Session, seed: u32| {
        let options = PruneOptions {
            seed,
            ..Default::default()
        };
        let spec = ScheduleSpec::parse_keep("0.5@0").unwrap();
        let p = Pruning::resolve(
            Policy::named("random").unwrap(),
            &spec,
            options,
            &w.config.geometry(),
        );
        s.run(&input, &p.unwrap())
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.kept)
            .collect::<Vec<_>>()
    };
    let a = run(&mut s, 1);
    assert_eq!(a, run(&mut s, 1));
    assert_ne!(a, run(&mut s, 2));
    assert_ne!(a[0], a[1], "images of a batch get different draws");
}

#[test]
fn threshold_keeps_a_different_count_per_image() {
    let (w, input) = model("tiny-timm");
    let mut s = Session::new(gpu(), &w).unwrap();
    let spec = ScheduleSpec::parse_threshold("1.0@0,1").unwrap();
    let threshold = resolve(&w, Policy::named("threshold").unwrap(), spec);
    let out = s.run(&input, &threshold).unwrap().items;
    let counts: Vec<Vec<usize>> = out
        .iter()
        .map(|o| o.kept.iter().map(Vec::len).collect())
        .collect();
    eprintln!("threshold counts {counts:?}");
    for (o, c) in out.iter().zip(&counts) {
        assert!(c[0] >= 1 && c[0] < 25 && c[1] >= 1 && c[1] <= c[0], "{c:?}");
        assert!(o.logits.iter().all(|v| v.is_finite()));
        assert!(o.flops < threshold.flops(&w.config.geometry()));
    }
}
