//! The default schedules: a FLOPs target without `--at` takes each policy's default shape (a
//! constant keep rate at its default blocks, or a search family scaled to the target), and a
//! schedule given without a policy runs the recommended one. The tokens these schedules keep on
//! DeiT-Tiny are checked against the reference in `tests/pruning/prune_reference.rs` (the real
//! cases with `--flops 0.65`); here, the shapes themselves.

use zeroprune::model::{Modality, TokenGeometry};
use zeroprune::prune::search::{families, fit_family};
use zeroprune::prune::{
    Policy, PruneOptions, PruneRequest, Pruning, ScheduleFile, ScheduleSpec, Shape,
    KEEP_RATE_FAMILY,
};

/// DeiT-Tiny's shape (no weights needed): 12 blocks, 196 patches.
fn deit_tiny() -> TokenGeometry {
    crate::common::plain_vit().geometry()
}

fn flops(policy: Policy, target: f64, at: Option<&str>) -> Pruning {
    let spec = ScheduleSpec::flops(target, at).unwrap();
    Pruning::resolve(policy, &spec, PruneOptions::default(), &deit_tiny()).unwrap()
}

/// Patch tokens removed at each block.
fn removal(p: &Pruning, depth: usize) -> Vec<usize> {
    let mut r = vec![0; depth];
    for s in &p.steps {
        r[s.block] = s.tokens_in - s.tokens_out();
    }
    r
}

/// The schedule `family` fits to `target`: a search family, or the keep rate at the default blocks.
fn fit(policy: Policy, target: f64, family: &str) -> Option<Pruning> {
    let c = deit_tiny();
    if family == KEEP_RATE_FAMILY {
        let blocks: Vec<String> = policy
            .def()
            .default_blocks(c.depth)
            .iter()
            .map(|b| b.to_string())
            .collect();
        Pruning::resolve(
            policy,
            &ScheduleSpec::flops(target, Some(&blocks.join(","))).unwrap(),
            PruneOptions::default(),
            &c,
        )
        .ok()
    } else {
        fit_family(policy, &PruneOptions::default(), &c, target, family).ok()
    }
}

#[test]
fn flops_targets_take_the_first_family_of_the_shape_that_reaches_them() {
    let c = deit_tiny();
    let mut shaped = 0;
    for &policy in Policy::all() {
        let preferred = policy.def().default_shape().0;
        if policy.is_none() || preferred == Shape::KEEP_RATE.0 {
            continue;
        }
        shaped += 1;
        for target in [0.8, 0.65, 0.5] {
            let got = Pruning::resolve(
                policy,
                &ScheduleSpec::flops(target, None).unwrap(),
                PruneOptions::default(),
                &c,
            )
            .ok();
            let first = preferred
                .iter()
                .find_map(|f| fit(policy, target, f).map(|p| (f, p)));
            assert_eq!(got, first.clone().map(|(_, p)| p), "{policy} {target}");
            let Some((family, p)) = first else { continue };
            // Within the target, and close to it.
            let ratio = p.flops(&c) / c.dense_flops();
            assert!(
                ratio <= target && ratio > target - 0.05,
                "{policy} {target}: {ratio}"
            );
            let Some((_, profile)) = families(c.depth).into_iter().find(|(n, _)| n == family)
            else {
                continue;
            };
            // The removal is round(t * w_i) for one scale t: zero where the profile is zero,
            // equal where it is flat.
            let r = removal(&p, c.depth);
            for (i, &w) in profile.iter().enumerate() {
                if w == 0.0 {
                    assert_eq!(r[i], 0, "{policy} {target}: {r:?}");
                }
            }
            if profile.iter().all(|&w| w == 0.0 || w == 1.0) {
                let nonzero: Vec<_> = r.iter().filter(|&&x| x > 0).collect();
                assert!(nonzero.windows(2).all(|w| w[0] == w[1]), "{policy}: {r:?}");
            } else {
                // Ramps: the removal follows the profile's order.
                for (i, j) in [(0, c.depth - 1), (c.depth / 2, c.depth - 1)] {
                    assert_eq!(
                        r[i].cmp(&r[j]),
                        profile[i]
                            .partial_cmp(&profile[j])
                            .unwrap()
                            .then(r[i].cmp(&r[j])),
                        "{policy} {family}: {r:?}"
                    );
                }
            }
        }
    }
    assert!(shaped >= 4);
}

#[test]
fn tome_at_65_percent_merges_the_same_number_at_every_other_block() {
    let p = flops(Policy::named("tome").unwrap(), 0.65, None);
    assert_eq!(p.describe(), "2:167,4:138,6:109,8:80,10:51");
    // --at keeps the constant keep rate at the named blocks.
    let at_all = flops(
        Policy::named("tome").unwrap(),
        0.65,
        Some("0,1,2,3,4,5,6,7,8,9,10,11"),
    );
    assert_eq!(at_all.steps.len(), 12);
    assert_eq!(at_all.steps[0].tokens_out(), 182);
}

#[test]
fn zero_tprune_falls_back_to_its_published_schedule() {
    let zt = Policy::named("zero-tprune").unwrap();
    // At 65% a late-heavy ramp would empty the last blocks: the published keep rate at 2..10.
    assert_eq!(
        flops(zt, 0.65, None).describe(),
        "2:160,4:131,6:107,8:88,10:72"
    );
    assert_eq!(
        flops(zt, 0.8, None),
        fit_family(
            zt,
            &PruneOptions::default(),
            &deit_tiny(),
            0.8,
            "late-heavy"
        )
        .unwrap()
    );
    // EViT has no shape of its own: the keep rate at its default blocks.
    assert_eq!(
        flops(Policy::named("evit").unwrap(), 0.65, None).describe(),
        "2:160,4:131,6:107,8:88,10:72"
    );
}

#[test]
fn a_schedule_without_a_policy_runs_the_recommended_one() {
    let c = deit_tiny();
    let req = |r: PruneRequest| r.resolve(&c).unwrap();
    // A FLOPs target: the policy measured best at the nearest level, in its default shape.
    for (f, want) in [
        (0.9, "tome-protect"),
        (0.8, "tome-protect"),
        (0.7, "zero-tprune-merge"),
        (0.65, "zero-tprune-merge"),
        (0.6, "zero-tprune-merge"),
        (0.5, "zero-tprune-merge"),
        (0.45, "zero-tprune-merge"),
    ] {
        assert_eq!(
            Policy::recommended(Some(f), Modality::Image).name(),
            want,
            "{f}"
        );
        let p = req(PruneRequest {
            flops: Some(f),
            ..Default::default()
        });
        assert_eq!(p, flops(Policy::named(want).unwrap(), f, None), "{f}");
    }
    for modality in [Modality::Image, Modality::Text] {
        let levels = Policy::recommended_levels(modality);
        for (&(level, p), next) in levels.iter().zip(levels.iter().skip(1)) {
            assert!(level > next.0 && !p.is_none());
        }
    }
    // Token counts or keep rates: the policy among the best at every level.
    let p = req(PruneRequest {
        keep: Some("0.7@3,6,9".into()),
        ..Default::default()
    });
    assert_eq!(p.policy, Policy::recommended(None, Modality::Image));
    assert_eq!(p.policy.name(), "zero-tprune-merge");
    let p = req(PruneRequest {
        threshold: Some("1.0@3".into()),
        ..Default::default()
    });
    assert_eq!(p.policy.name(), "threshold");
    // An option the recommended policy does not read says which policy ran, and why.
    let err = PruneRequest {
        flops: Some(0.65),
        sim: Some(0.3),
        ..Default::default()
    }
    .resolve(&c)
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("zero-tprune-merge (the recommended policy")
            && err.to_string().contains("zero-tprune"),
        "{err}"
    );
    // Nothing at all is the dense model; options alone still need a policy.
    assert!(req(PruneRequest::default()).is_dense());
    let err = PruneRequest {
        sim: Some(0.3),
        ..Default::default()
    }
    .resolve(&c)
    .unwrap_err();
    assert!(err.to_string().contains("need a pruning policy"), "{err}");
    // An explicit none with a schedule is still refused.
    let err = PruneRequest {
        policy: Some("none".into()),
        flops: Some(0.65),
        ..Default::default()
    }
    .resolve(&c)
    .unwrap_err();
    assert!(err.to_string().contains("takes no schedule"), "{err}");
}

#[test]
fn the_shipped_schedules_resolve_within_their_budget() {
    // docs/schedules/: what the quality study tuned, named deit-tiny-POLICY-LEVEL.json.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schedules");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = ScheduleFile::read(&path).unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let level: f64 = stem.rsplit('-').next().unwrap().parse().unwrap();
        assert!(stem.contains(&file.policy), "{stem}");
        let p = PruneRequest {
            schedule: Some(file),
            ..Default::default()
        }
        .resolve(&deit_tiny())
        .unwrap();
        let ratio = p.flops(&deit_tiny()) / deit_tiny().dense_flops();
        assert!(ratio <= level + 1e-9, "{stem}: {ratio}");
        n += 1;
    }
    assert!(n >= 12, "{n} schedules");
}

#[test]
fn a_text_schedule_without_a_policy_runs_the_text_recommendation() {
    // all-MiniLM-L6-v2's shape for a text of 42 tokens.
    let text = TokenGeometry {
        modality: Modality::Text,
        protected: 2,
        prunable: 40,
        depth: 6,
        width: 384,
        heads: 12,
        mlp: 1536,
        fixed_flops: 0.0,
    };
    for (f, want) in [
        (0.8, "zero-tprune-merge"),
        (0.65, "tome-protect"),
        (0.5, "tome-protect"),
    ] {
        assert_eq!(Policy::recommended(Some(f), Modality::Text).name(), want);
        let request = PruneRequest {
            flops: Some(f),
            ..Default::default()
        };
        // Resolved on a text geometry, directly or through a pruner bound to the model.
        assert_eq!(request.resolve(&text).unwrap().policy.name(), want, "{f}");
        let pruner = zeroprune::prune::Pruner::new(request, None, &text).unwrap();
        assert_eq!(pruner.policy().unwrap().name(), want, "{f}");
    }
    // The same request on an image model runs the image recommendation.
    let image = PruneRequest {
        flops: Some(0.65),
        ..Default::default()
    };
    assert_eq!(
        image.resolve(&deit_tiny()).unwrap().policy.name(),
        "zero-tprune-merge"
    );
}
