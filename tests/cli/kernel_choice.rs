//! A kernel choice that cannot go wrong: the decision rule on injected timings (a first round
//! that includes compiling, loaded rounds, a slow candidate, a marginal one), the slow-forward
//! check, and on the real adapter a fresh machine (empty Mesa shader cache), a loaded one and a
//! deliberately slow candidate, each of whose cached choice is timed against the quiet one and
//! the default.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::common::{cli, fixture, gpu};
use zeroprune::gpu::kernels::{Gemm, MatView};
use zeroprune::gpu::tune::{
    decide, decide_confirmed, CandidateTiming, Decision, TuneHooks, TuneReport, SLOW_RUNS,
};
use zeroprune::gpu::{GpuTensor, KernelChoice, Kernels, Program};

const NAN: f64 = f64::NAN;

fn round_robin(default: Vec<f64>, others: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut all = vec![default];
    all.extend(others.iter().cloned());
    all
}

#[test]
fn a_first_round_that_includes_compiling_decides_nothing() {
    // The case: every candidate but the naive one compiles in its first timed run.
    let default = vec![9.0, 1.0, 1.02, 0.99, 1.0, 1.01, 1.0];
    let naive = vec![2.0, 2.1, 2.0, 1.9, 2.0, 2.05, 2.0];
    let tiled = vec![12.0, 1.3, 1.3, 1.28, 1.31, 1.3, 1.29];
    assert_eq!(decide(0, &round_robin(default, &[naive, tiled])), 0);
}

#[test]
fn a_marginally_faster_candidate_does_not_replace_the_default() {
    let default = vec![1.0; 7];
    let marginal = vec![0.94, 0.95, 0.93, 0.95, 0.94, 0.96, 0.95];
    assert_eq!(decide(0, &round_robin(default, &[marginal])), 0);
}

#[test]
fn noisy_loaded_rounds_keep_the_default() {
    // Load comes and goes: some rounds are slow for one candidate or the other.
    let default = vec![1.0, 2.8, 1.0, 1.1, 3.1, 1.0, 1.0];
    let other = vec![0.97, 1.0, 2.9, 0.99, 1.2, 0.96, 2.5];
    assert_eq!(decide(0, &round_robin(default, &[other])), 0);
    // A candidate that wins big in a few loaded rounds only.
    let default = vec![1.0, 3.0, 1.0, 3.0, 1.0, 1.0, 1.0];
    let lucky = vec![1.05, 1.0, 1.05, 1.0, 1.05, 1.05, 1.05];
    assert_eq!(decide(0, &round_robin(default, &[lucky])), 0);
}

#[test]
fn a_deliberately_slow_candidate_is_never_chosen() {
    let default = vec![1.0; 7];
    let slow = vec![3.0; 7];
    assert_eq!(
        decide(
            0,
            &round_robin(default.clone(), std::slice::from_ref(&slow))
        ),
        0
    );
    // Also when it is the default's only rival and its first round looked fast.
    let slow_but_first = vec![0.1, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0];
    assert_eq!(decide(0, &round_robin(default, &[slow, slow_but_first])), 0);
}

#[test]
fn a_clear_and_consistent_winner_replaces_the_default() {
    // 30% faster, with two loaded rounds that hit it.
    let default = vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    let winner = vec![0.7, 0.72, 2.0, 0.69, 0.7, 1.9, 0.71];
    let good = vec![0.85, 0.86, 0.84, 0.85, 0.86, 0.85, 0.84];
    let t = round_robin(default, &[good, winner]);
    assert_eq!(
        decide(0, &t),
        2,
        "the lowest median ratio of the clear winners"
    );
    // The default need not come first.
    let t = vec![t[2].clone(), t[1].clone(), t[0].clone()];
    assert_eq!(decide(2, &t), 0);
}

#[test]
fn a_win_must_repeat_in_the_confirming_rounds() {
    let default = vec![1.0; 7];
    let first = vec![default.clone(), vec![0.7; 7], vec![0.8; 7], vec![2.0; 7]];
    assert_eq!(decide(0, &first), 1);
    // Both winners qualify again: the lower median ratio over both sets of rounds.
    let again = vec![default.clone(), vec![0.75; 7], vec![0.8; 7]];
    let (chosen, all) = decide_confirmed(&first, &[0, 1, 2], &again);
    assert_eq!(chosen, 1);
    assert_eq!(all[1].len(), 14);
    assert!(all[3][7..].iter().all(|t| t.is_nan()), "not timed again");
    // Noise made the first set's best win; only the other repeats it.
    let again = vec![
        default.clone(),
        vec![0.99, 1.0, 0.97, 1.02, 0.98, 1.0, 0.99],
        vec![0.8; 7],
    ];
    assert_eq!(decide_confirmed(&first, &[0, 1, 2], &again).0, 2);
    // Neither repeats it: the default stays.
    let again = vec![default.clone(), vec![1.0; 7], vec![0.97; 7]];
    assert_eq!(decide_confirmed(&first, &[0, 1, 2], &again).0, 0);
    // The default need not be candidate 0.
    let first = vec![vec![0.7; 7], default.clone()];
    let again = vec![default.clone(), vec![0.7; 7]];
    assert_eq!(decide_confirmed(&first, &[1, 0], &again).0, 0);
    // Bad input does not panic.
    assert_eq!(decide_confirmed(&first, &[], &[]).0, 0);
    assert_eq!(decide_confirmed(&first, &[1, 0], &[]).0, 1);
}

#[test]
fn a_candidate_timed_in_too_few_rounds_cannot_win() {
    let default = vec![1.0; 7];
    let dropped = vec![0.5, 0.5, NAN, NAN, NAN, NAN, NAN];
    assert_eq!(decide(0, &round_robin(default, &[dropped])), 0);
}

#[test]
fn bad_timings_do_not_panic() {
    assert_eq!(decide(0, &[]), 0);
    assert_eq!(decide(3, &[vec![1.0], vec![0.1]]), 3);
    let t = vec![vec![NAN; 7], vec![0.5; 7], vec![f64::INFINITY, -1.0, 0.0]];
    assert_eq!(decide(0, &t), 0);
    let t = vec![vec![1.0; 7], vec![]];
    assert_eq!(decide(0, &t), 0);
}

#[test]
fn a_decision_keeps_every_candidates_timings() {
    let names = vec!["a".to_string(), "b".to_string()];
    let t = vec![
        vec![0.01; 7],
        vec![0.005, 0.005, 0.02, 0.005, 0.005, 0.005, NAN],
    ];
    let d = Decision::from_rounds("gemm", "1x1x1".into(), &names, (0, 1), &t, Some(1e8));
    assert_eq!((d.default.as_str(), d.chosen.as_str()), ("a", "b"));
    let b = &d.candidates[1];
    assert_eq!((b.rounds, b.faster_rounds), (6, 5));
    assert_eq!(b.ratio, Some(0.5));
    assert!((b.seconds - 0.005).abs() < 1e-12);
    assert!((b.gflops.unwrap() - 20.0).abs() < 1e-9);
    assert_eq!(d.candidates[0].ratio, Some(1.0));
    assert_eq!(d.gflops("a"), Some(10.0));
}

/// A report whose GEMMs all ran at `gflops`.
fn report_at(gflops: f64) -> TuneReport {
    let candidates = zeroprune::gpu::GemmKernel::CANDIDATES
        .iter()
        .map(|k| CandidateTiming {
            name: k.name(),
            seconds: 1.0,
            gflops: Some(gflops),
            ratio: Some(1.0),
            rounds: 7,
            faster_rounds: 0,
        })
        .collect::<Vec<_>>();
    let decision = |what: &str| Decision {
        what: what.into(),
        shape: String::new(),
        default: String::new(),
        chosen: String::new(),
        candidates: candidates.clone(),
    };
    TuneReport {
        margin: 0.1,
        rounds: 7,
        decisions: vec![decision("gemm"), decision("gemm_small")],
    }
}

#[test]
fn only_a_streak_of_far_slower_forwards_is_noticed_and_only_once() {
    let k = Kernels::new(gpu());
    let (m, n, kk) = (1576, 576, 192);
    let a = GpuTensor::zeros(gpu(), "a", m * kk);
    let b = GpuTensor::zeros(gpu(), "b", kk * n);
    let c = GpuTensor::zeros(gpu(), "c", m * n);
    let g = Gemm::new(m, n, kk);
    let step = k
        .gemm(
            "qkv",
            MatView::rows(&a, kk),
            MatView::rows(&b, n),
            MatView::rows(&c, n),
            g,
        )
        .unwrap();
    let program = Program { steps: vec![step] };
    assert_eq!(k.predicted_gemm_seconds(&program), None, "no timings yet");
    assert_eq!(k.slow_forward_streak(&program, 100.0), None);
    k.set_tune_report(Some(report_at(10.0)));
    let predicted = k.predicted_gemm_seconds(&program).unwrap();
    assert!((predicted - g.flops() / 10e9).abs() < 1e-9, "{predicted}");
    let slow = 10.0 * predicted;
    // Slow forwards interrupted by a normal one start counting again.
    for _ in 0..SLOW_RUNS - 1 {
        assert_eq!(k.slow_forward_streak(&program, slow), None);
    }
    assert_eq!(k.slow_forward_streak(&program, 2.0 * predicted), None);
    for _ in 0..SLOW_RUNS - 1 {
        assert_eq!(k.slow_forward_streak(&program, slow), None);
    }
    assert_eq!(k.slow_forward_streak(&program, slow), Some(predicted));
    assert_eq!(k.slow_forward_streak(&program, slow), None, "once");
    // A program without GEMMs predicts nothing.
    assert_eq!(k.predicted_gemm_seconds(&Program::default()), None);
}

/// The binary on the tiny fixture with its own kernel cache and Mesa shader cache.
fn zeroprune(cache: &Path, mesa: &Path) -> Command {
    let mut c = cli::zeroprune();
    c.env_remove("ZEROPRUNE_RETUNE")
        .env_remove("ZEROPRUNE_TUNE_SLOW")
        .env("ZEROPRUNE_CACHE_DIR", cache)
        .env("MESA_SHADER_CACHE_DIR", mesa);
    c
}

/// Run `classify` (which measures the kernels into an empty cache) and return what it cached,
/// with the timings `info --json` shows.
fn measure(
    cache: &Path,
    mesa: &Path,
    image: &Path,
    slow: Option<&str>,
) -> (KernelChoice, TuneReport) {
    let mut c = zeroprune(cache, mesa);
    if let Some(s) = slow {
        c.env("ZEROPRUNE_TUNE_SLOW", s);
    }
    let out = c
        .args(["classify", "--top", "1", "--model"])
        .arg(fixture("tiny-hf-vit"))
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = zeroprune(cache, mesa)
        .args(["info", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let choice = serde_json::from_value(v["cached_choice"].clone()).expect("a cached choice");
    let report = serde_json::from_value(v["cached_timings"].clone()).expect("cached timings");
    (choice, report)
}

/// Run `f` while this process keeps every core busy (a spinning thread per core).
fn loaded<T>(f: impl FnOnce() -> T) -> T {
    let stop = AtomicBool::new(false);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..cores {
            s.spawn(|| {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            });
        }
        let out = f();
        stop.store(true, Ordering::Relaxed);
        out
    })
}

/// Each choice's block time (every step the fastest it ran in 7 interleaved rounds, so that a
/// busy machine does not decide); equal choices are timed once.
fn times(choices: &[KernelChoice], hooks: &TuneHooks) -> Vec<f64> {
    let mut distinct: Vec<KernelChoice> = Vec::new();
    for c in choices {
        if !distinct.contains(c) {
            distinct.push(*c);
        }
    }
    let t = Kernels::new(gpu())
        .time_choices_blocking(&distinct, 7, hooks)
        .unwrap();
    eprintln!("block ms:");
    for (c, s) in distinct.iter().zip(&t) {
        eprintln!("  {:.1}  {c:?}", s * 1e3);
    }
    choices
        .iter()
        .map(|c| t[distinct.iter().position(|d| d == c).unwrap()])
        .collect()
}

/// `choice` with the slowed GEMM kernel replaced by the fastest other one the quiet measurement
/// timed (for its size class): what a tuner that noticed the slow candidate could have chosen.
fn without(choice: KernelChoice, slowed: &str, quiet: &TuneReport) -> KernelChoice {
    let runner_up = |what: &str| {
        let d = quiet.decision(what).unwrap();
        let best = d
            .candidates
            .iter()
            .filter(|c| c.name != slowed && c.rounds > 0)
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
            .unwrap();
        *zeroprune::gpu::GemmKernel::CANDIDATES
            .iter()
            .find(|k| k.name() == best.name)
            .unwrap()
    };
    KernelChoice {
        gemm: if choice.gemm.name() == slowed {
            runner_up("gemm")
        } else {
            choice.gemm
        },
        gemm_small: if choice.gemm_small.name() == slowed {
            runner_up("gemm_small")
        } else {
            choice.gemm_small
        },
        ..choice
    }
}

/// Assert that choice `i` is at most 10% slower than every reference in `refs`.
fn within_10_percent(
    what: &str,
    t: &[f64],
    i: usize,
    refs: &[(&str, usize)],
    choices: &[KernelChoice],
) {
    for &(name, r) in refs {
        assert!(
            t[i] <= 1.1 * t[r],
            "{what} choice {:?} takes {:.1} ms, over 10% more than the {name} choice {:?} ({:.1} ms)",
            choices[i],
            t[i] * 1e3,
            choices[r],
            t[r] * 1e3,
        );
    }
}

#[test]
fn a_fresh_loaded_or_misled_machine_never_caches_a_slower_choice() {
    let dir = tempfile::tempdir().unwrap();
    let mesa = dir.path().join("mesa-shader-cache");
    std::fs::create_dir_all(&mesa).unwrap();
    let image = dir.path().join("a.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .save(&image)
        .unwrap();
    let started = std::time::Instant::now();
    // A fresh machine: Mesa's shader cache and the kernel cache are empty.
    let (fresh, _) = measure(&dir.path().join("fresh"), &mesa, &image, None);
    // The quiet reference: the shaders are in Mesa's cache now, nothing else runs.
    let (quiet, quiet_report) = measure(&dir.path().join("quiet"), &mesa, &image, None);
    // Measured while every core is busy.
    let (busy, _) = loaded(|| measure(&dir.path().join("busy"), &mesa, &image, None));
    // The quiet choice's large GEMM made three times slower.
    let slowed = quiet.gemm.name();
    let hook = format!("{slowed}:3");
    let (misled, _) = measure(&dir.path().join("slow"), &mesa, &image, Some(&hook));
    eprintln!(
        "measured in {:.0} s: fresh {fresh:?}, quiet {quiet:?}, busy {busy:?}, misled {misled:?}",
        started.elapsed().as_secs_f64()
    );

    let guess = KernelChoice::guess(gpu());
    let choices = [guess, quiet, fresh, busy];
    let t = times(&choices, &TuneHooks::default());
    let refs = [("default", 0), ("quiet", 1)];
    within_10_percent("the quiet", &t, 1, &refs[..1], &choices);
    within_10_percent("a fresh machine's", &t, 2, &refs, &choices);
    within_10_percent("a busy machine's", &t, 3, &refs, &choices);

    // With the slow candidate timed as slow as it was measured.
    let hooks = TuneHooks {
        slow: Some((slowed.clone(), 3)),
    };
    let alternative = without(quiet, &slowed, &quiet_report);
    let choices = [guess, quiet, alternative, misled];
    let t = times(&choices, &hooks);
    within_10_percent(
        "the slow candidate's",
        &t,
        3,
        &[("default", 0), ("quiet", 1), ("alternative", 2)],
        &choices,
    );
    eprintln!("all in {:.0} s", started.elapsed().as_secs_f64());
}
