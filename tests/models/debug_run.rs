//! The debug twin (`Mode::Debug`): the same step list submitted one step at a time with every
//! step's outputs read back. Its intermediates of a real forward pass (DeiT-Tiny on a real image)
//! match the independent NumPy pass of `tests/reference/trace_deit.py`, and a pruning step's
//! importance scores match the PyTorch pruning reference; its logits equal the normal run's.

use crate::common::{fixture, gpu, max_rel_err, read_tensor, shared};
use zeroprune::gpu::{KernelChoice, StepOutput};
use zeroprune::prune::{Policy, PruneOptions, Pruning, ScheduleSpec};
use zeroprune::{Mode, ModelWeights, Run, Session};

/// The outputs of the step labelled `label`, slot `slot`.
fn output(trace: &[StepOutput], label: &str, slot: &str) -> Vec<f32> {
    trace
        .iter()
        .find(|s| s.label == label)
        .unwrap_or_else(|| panic!("no step {label}"))
        .f32(slot)
        .unwrap_or_else(|| panic!("step {label} writes no {slot}"))
}

#[test]
fn deit_tiny_intermediates_match_numpy() {
    let dir = shared().join("models/deit-tiny-patch16-224");
    let weights = ModelWeights::load(&dir).expect("the real model is needed here");
    let mut session = Session::new(gpu(), &weights).unwrap();
    // The unfused attention writes the probabilities the test compares.
    session.set_kernel_choice(KernelChoice {
        fused_attention: false,
        ..session.kernel_choice()
    });
    let (_, input0) = read_tensor(&fixture("deit-tiny-numpy-first8.safetensors"), "input0");
    let dense = Pruning::dense();
    let normal = session.run(&input0, &dense).unwrap();
    let debug = session
        .run(&input0, Run::new(&dense).mode(Mode::Debug))
        .unwrap();
    let trace = debug.trace.expect("a debug run returns its trace");

    // One entry per step, in the program's order; the same logits as the one-pass run.
    let labels: Vec<String> = trace.iter().map(|s| s.label.clone()).collect();
    assert_eq!(labels, session.step_labels(1, &dense).unwrap());
    assert_eq!(debug.items[0].logits, normal.items[0].logits);

    let want = fixture("deit-tiny-numpy-trace.safetensors");
    let (n, d) = (197, 192);
    // Block 0's attention probabilities: queries 0..7 of each of the 3 heads.
    let probs = output(&trace, "block0.softmax", "x");
    let (_, want_probs) = read_tensor(&want, "probs.0");
    let got: Vec<f32> = (0..3)
        .flat_map(|h| probs[h * n * n..][..8 * n].to_vec())
        .collect();
    let err = max_rel_err(&got, &want_probs);
    eprintln!("block 0 attention probabilities: max relative error {err:.2e}");
    assert!(err < 1e-5, "probabilities differ by {err}");
    // The residual stream after blocks 0, 5 and 11 (the fc2 step accumulates into it).
    for block in [0, 5, 11] {
        let x = output(&trace, &format!("block{block}.fc2"), "c");
        let (_, want_x) = read_tensor(&want, &format!("x.{block}"));
        let err = max_rel_err(&x[..n * d], &want_x);
        eprintln!("x after block {block}: max relative error {err:.2e}");
        assert!(
            err < 1e-4,
            "block {block}: residual stream differs by {err}"
        );
    }
    let (_, want_cls) = read_tensor(&want, "cls");
    let err = max_rel_err(&output(&trace, "norm", "y"), &want_cls);
    assert!(err < 1e-4, "final-normed CLS differs by {err}");
    let (_, want_logits) = read_tensor(&want, "logits");
    let err = max_rel_err(&output(&trace, "head", "c"), &want_logits);
    assert!(err < 1e-4, "logits differ by {err}");
}

#[test]
fn pruning_scores_in_the_trace_match_the_reference() {
    // tests/fixtures/prune/cases.json: `deep-zero-tprune`, zero-tprune with --keep 0.7@0,2.
    let dir = fixture("prune/tiny-timm-deep");
    let weights = ModelWeights::load(&dir).unwrap();
    let (_, input) = read_tensor(&dir.join("reference.safetensors"), "input");
    let spec = ScheduleSpec::parse_keep("0.7@0,2").unwrap();
    let policy = Policy::named("zero-tprune").unwrap();
    let pruning = Pruning::resolve(
        policy,
        &spec,
        PruneOptions::default(),
        &weights.config.geometry(),
    )
    .unwrap();
    let mut session = Session::new(gpu(), &weights).unwrap();
    let out = session
        .run(&input, Run::new(&pruning).mode(Mode::Debug))
        .unwrap();
    let trace = out.trace.unwrap();
    let reference = fixture("prune/deep-zero-tprune.safetensors");
    let prefix = weights.config.num_prefix_tokens();
    for (s, step) in pruning.steps.iter().enumerate() {
        // The importance stage's combined WPR scores, every row of every image; the reference has
        // the patch rows, -inf where the similarity stage removed one (the GPU's -3e38).
        let got = output(
            &trace,
            &format!("block{}.prune.combine_heads", step.block),
            "c_score",
        );
        let (shape, want) = read_tensor(&reference, &format!("score.{s}"));
        let (batch, patches) = (shape[0], shape[1]);
        assert_eq!(patches, step.tokens_in);
        let rows = prefix + patches;
        let (mut got_live, mut want_live) = (vec![], vec![]);
        for b in 0..batch {
            for p in 0..patches {
                let (g, w) = (got[b * rows + prefix + p], want[b * patches + p]);
                if w == f32::NEG_INFINITY {
                    assert_eq!(g, -3.0e38, "step {s} image {b} patch row {p}: removed");
                } else {
                    got_live.push(g);
                    want_live.push(w);
                }
            }
        }
        let err = max_rel_err(&got_live, &want_live);
        eprintln!(
            "step {s}: {} scores, max relative error {err:.2e}",
            got_live.len()
        );
        assert!(err < 1e-4, "step {s}: scores differ by {err}");
    }
}
