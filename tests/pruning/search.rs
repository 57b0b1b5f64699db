//! The schedule search (`src/prune/search.rs`) takes exactly the steps of the reference
//! implementation (`tests/reference/quality.py search-fixture`): on the tiny model, with a synthetic
//! score instead of images, the same candidates in the same order, with the same costs, and the
//! same winner; every candidate fits the budget and the policy's limits.

use crate::common::fixture;
use zeroprune::prune::search::{flops_ratio, Score, Space};
use zeroprune::prune::{Policy, PruneRequest, Pruning};
use zeroprune::ModelWeights;

#[derive(serde::Deserialize)]
struct Case {
    policy: String,
    limit: f64,
    options: Vec<String>,
    candidates: Vec<Expected>,
    best: String,
}

#[derive(serde::Deserialize)]
struct Expected {
    how: String,
    tokens: String,
    cost: f64,
    agree: i64,
}

/// The reference's stand-in score: removal late in the model scores higher, large single steps
/// are penalised, fewer pruning steps win ties.
fn synthetic(p: &Pruning, depth: usize) -> (i64, f64) {
    let mut r = vec![0i64; depth];
    for s in &p.steps {
        r[s.block] = (s.tokens_in - s.tokens_out()) as i64;
    }
    let agree = r
        .iter()
        .enumerate()
        .map(|(i, x)| x * (i as i64 + 1))
        .sum::<i64>()
        - r.iter().map(|x| x * x).sum::<i64>().div_euclid(8);
    (agree, p.steps.len() as f64 / 100.0)
}

fn tokens(p: &Pruning) -> String {
    p.steps
        .iter()
        .map(|s| format!("{}:{}", s.block, s.tokens_out()))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn the_search_takes_the_reference_steps() {
    let w = ModelWeights::load(&fixture("prune/tiny-timm-deep")).unwrap();
    let c = &w.config.geometry();
    let text = std::fs::read_to_string(fixture("search/tiny-timm-deep.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let mut request = PruneRequest {
            policy: Some(case.policy.clone()),
            ..Default::default()
        };
        for pair in case.options.chunks(2) {
            match pair[0].as_str() {
                "--protect" => request.protect = Some(pair[1].parse().unwrap()),
                other => panic!("option {other}"),
            }
        }
        let options = request.resolve(c).unwrap().options;
        let space = Space {
            policy: Policy::named(&case.policy).unwrap(),
            options,
            config: c,
            limit: case.limit,
            granularity: 1,
            rounds: 2,
        };
        // The synthetic agreement can be negative; shift it into a count (order is kept).
        const SHIFT: i64 = 1 << 20;
        let mut tried = vec![];
        let best = space
            .search(
                &mut |p| Ok(flops_ratio(p, c)),
                &mut |p| {
                    let (agree, kl) = synthetic(p, c.depth);
                    Ok(Score {
                        agree: (agree + SHIFT) as usize,
                        images: 64,
                        kl,
                    })
                },
                &mut |cand| tried.push(cand.clone()),
            )
            .unwrap();
        let what = format!("{} @ {}", case.policy, case.limit);
        let got: Vec<(String, String)> = tried
            .iter()
            .map(|t| (t.how.clone(), tokens(&t.pruning)))
            .collect();
        let want: Vec<(String, String)> = case
            .candidates
            .iter()
            .map(|e| (e.how.clone(), e.tokens.clone()))
            .collect();
        assert_eq!(got, want, "{what}: candidates");
        for (t, e) in tried.iter().zip(&case.candidates) {
            assert!(
                (t.cost - e.cost).abs() < 1e-12,
                "{what}: cost of {}",
                e.tokens
            );
            assert_eq!(
                t.score.agree as i64 - SHIFT,
                e.agree,
                "{what}: {}",
                e.tokens
            );
            assert!(t.cost <= case.limit, "{what}: {} over budget", e.tokens);
        }
        assert_eq!(tokens(&best.pruning), case.best, "{what}: best");
        eprintln!("{what}: {} candidates, best {}", tried.len(), case.best);
    }
}

#[test]
fn an_unreachable_budget_is_an_error_naming_it() {
    let w = ModelWeights::load(&fixture("prune/tiny-timm-deep")).unwrap();
    let c = &w.config.geometry();
    let space = Space {
        policy: Policy::named("tome").unwrap(),
        options: Default::default(),
        config: c,
        limit: 0.05,
        granularity: 1,
        rounds: 2,
    };
    let e = space
        .search(
            &mut |p| Ok(flops_ratio(p, c)),
            &mut |_| unreachable!("nothing fits, nothing is scored"),
            &mut |_| {},
        )
        .unwrap_err();
    assert!(e.to_string().contains("0.05"), "{e}");
}
