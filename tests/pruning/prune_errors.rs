//! Bad pruning input: every mistake is a clear `InvalidParam` naming the parameter at fault, never a
//! panic, checked before any GPU work.

use crate::common::fixture;
use zeroprune::model::TokenGeometry;
use zeroprune::prune::{Policy, PruneOptions, Pruning, ScheduleSpec};
use zeroprune::{Error, ModelWeights};

/// DeiT-shaped config of the tiny timm fixture: 2 blocks, 25 patches, 1 prefix token.
fn config() -> TokenGeometry {
    ModelWeights::load(&fixture("tiny-timm"))
        .unwrap()
        .config
        .geometry()
}

/// The error's parameter name and message.
fn param(e: Error) -> (String, String) {
    let msg = e.to_string();
    match e {
        Error::InvalidParam { name, .. } => (name, msg),
        other => panic!("expected InvalidParam, got {other:?}"),
    }
}

fn resolve_err(policy: Policy, spec: ScheduleSpec) -> (String, String) {
    param(Pruning::resolve(policy, &spec, PruneOptions::default(), &config()).unwrap_err())
}

#[test]
fn keep_rates_outside_0_1_are_refused() {
    for bad in ["0@0", "1.5@0", "-0.2@1", "nan@0", "x@0"] {
        let (name, msg) = param(ScheduleSpec::parse_keep(bad).unwrap_err());
        assert_eq!(name, "keep", "{bad}: {msg}");
    }
    let (_, msg) = param(ScheduleSpec::parse_keep("0.7").unwrap_err());
    assert!(msg.contains("0.7@3,6,9"), "{msg}");
    let (_, msg) = param(ScheduleSpec::parse_keep("0.7@a").unwrap_err());
    assert!(msg.contains("'a'"), "{msg}");
}

#[test]
fn blocks_outside_the_model_are_refused() {
    let (name, msg) = resolve_err(
        Policy::named("evit").unwrap(),
        ScheduleSpec::parse_keep("0.7@2").unwrap(),
    );
    assert_eq!(name, "keep");
    assert!(msg.contains("block 2") && msg.contains("0..1"), "{msg}");
    let (name, _) = resolve_err(
        Policy::named("evit").unwrap(),
        ScheduleSpec::parse_tokens("5:3").unwrap(),
    );
    assert_eq!(name, "tokens");
    let (name, _) = resolve_err(
        Policy::named("threshold").unwrap(),
        ScheduleSpec::parse_threshold("1@9").unwrap(),
    );
    assert_eq!(name, "threshold");
    let (name, _) = resolve_err(
        Policy::named("evit").unwrap(),
        ScheduleSpec::flops(0.9, Some("0,7")).unwrap(),
    );
    assert_eq!(name, "at");
    let (name, msg) = resolve_err(
        Policy::named("evit").unwrap(),
        ScheduleSpec::parse_keep("0.7@1;0.5@1").unwrap(),
    );
    assert!(name == "keep" && msg.contains("twice"), "{msg}");
}

#[test]
fn token_counts_must_fit_and_shrink() {
    for bad in ["0:0", "0:26", "0:10,1:11"] {
        let (name, msg) = resolve_err(
            Policy::named("wpr").unwrap(),
            ScheduleSpec::parse_tokens(bad).unwrap(),
        );
        assert_eq!(name, "tokens", "{bad}: {msg}");
    }
    for bad in ["3", "a:4", "1:b"] {
        let (name, _) = param(ScheduleSpec::parse_tokens(bad).unwrap_err());
        assert_eq!(name, "tokens", "{bad}");
    }
}

#[test]
fn flops_targets_must_be_reachable() {
    for bad in [0.0, -1.0, 1.5, f64::NAN] {
        let (name, _) = param(ScheduleSpec::flops(bad, None).unwrap_err());
        assert_eq!(name, "flops");
    }
    // Keeping one patch token at block 1 of 2 cannot go below about half the dense FLOPs.
    let (name, msg) = resolve_err(
        Policy::named("random").unwrap(),
        ScheduleSpec::flops(0.05, Some("1")).unwrap(),
    );
    assert_eq!(name, "flops");
    assert!(msg.contains("lowest"), "{msg}");
    // ToMe merges at most half per step: its floor is higher still.
    let (name, msg) = resolve_err(
        Policy::named("tome").unwrap(),
        ScheduleSpec::flops(0.3, None).unwrap(),
    );
    assert!(name == "flops" && msg.contains("half"), "{msg}");
}

#[test]
fn tome_merges_at_most_half() {
    let (name, msg) = resolve_err(
        Policy::named("tome").unwrap(),
        ScheduleSpec::parse_keep("0.4@0").unwrap(),
    );
    assert_eq!(name, "keep");
    assert!(
        msg.contains("at most half") && msg.contains("block 0"),
        "{msg}"
    );
    // Half exactly is fine: 25 -> 13 merges 12 = floor(25 / 2).
    let ok = Pruning::resolve(
        Policy::named("tome").unwrap(),
        &ScheduleSpec::parse_tokens("0:13").unwrap(),
        PruneOptions::default(),
        &config(),
    );
    assert!(ok.is_ok());
}

#[test]
fn schedules_must_suit_the_policy() {
    let (name, _) = resolve_err(
        Policy::named("none").unwrap(),
        ScheduleSpec::parse_keep("0.5@0").unwrap(),
    );
    assert_eq!(name, "policy");
    let (name, _) = resolve_err(
        Policy::named("threshold").unwrap(),
        ScheduleSpec::parse_keep("0.5@0").unwrap(),
    );
    assert_eq!(name, "threshold");
    let (name, _) = resolve_err(
        Policy::named("zero-tprune").unwrap(),
        ScheduleSpec::parse_threshold("1@0").unwrap(),
    );
    assert_eq!(name, "policy");
    for bad in ["-1@0", "inf@0"] {
        let (name, _) = param(ScheduleSpec::parse_threshold(bad).unwrap_err());
        assert_eq!(name, "threshold");
    }
}

#[test]
fn unknown_names_and_options_are_refused() {
    let (name, msg) = param("zerotprune2".parse::<Policy>().unwrap_err());
    assert!(name == "policy" && msg.contains("zero-tprune"), "{msg}");
    assert_eq!(
        "Zero_TPrune".parse::<Policy>().unwrap(),
        Policy::named("zero-tprune").unwrap()
    );
    let (name, _) = param(
        "median"
            .parse::<zeroprune::prune::HeadCombine>()
            .unwrap_err(),
    );
    assert_eq!(name, "heads");
    for (options, what) in [
        (
            PruneOptions {
                sim: 1.5,
                ..Default::default()
            },
            "sim",
        ),
        (
            PruneOptions {
                sim: f32::NAN,
                ..Default::default()
            },
            "sim",
        ),
        (
            PruneOptions {
                iters: Some(0),
                ..Default::default()
            },
            "iters",
        ),
        (
            PruneOptions {
                band: (0.7, 0.01),
                ..Default::default()
            },
            "band",
        ),
    ] {
        let spec = ScheduleSpec::parse_keep("0.5@0").unwrap();
        let e = Pruning::resolve(
            Policy::named("zero-tprune").unwrap(),
            &spec,
            options,
            &config(),
        )
        .unwrap_err();
        assert_eq!(param(e).0, what);
    }
}
