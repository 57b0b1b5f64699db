//! Pruning on text beyond the reference cases: a text's result does not depend on the texts
//! beside it, per-layer thresholds from a file, FLOPs targets (keep rates per length, thresholds
//! by calibration), and the requests text refuses.

use crate::common::text::{encode, tokenizer};
use crate::common::{fixture, gpu, prune_texts};
use zeroprune::model::bert::BertWeights;
use zeroprune::prune::PruneRequest;
use zeroprune::prune::Pruner;
use zeroprune::text::TextTokenizer;
use zeroprune::TextSession;

fn model() -> (BertWeights, TextTokenizer) {
    let dir = fixture("tiny-bert-prune");
    let w = BertWeights::load(&dir).unwrap();
    let t = tokenizer(&dir, &w);
    (w, t)
}

/// The tiny model's pruning texts.
fn texts() -> Vec<String> {
    prune_texts("tiny")
}

fn request(policy: &str) -> PruneRequest {
    PruneRequest {
        policy: Some(policy.into()),
        ..Default::default()
    }
}

#[test]
fn a_pruned_text_is_the_same_alone_and_in_a_batch() {
    let (w, t) = model();
    let all = texts();
    // Texts of equal length run as one batch; the others beside them in the call.
    let batch = vec![
        all[1].clone(),
        all[3].clone(),
        all[1].clone(),
        all[1].clone(),
    ];
    let mut s = TextSession::new(gpu(), &w).unwrap();
    for (policy, schedule) in [
        ("zero-tprune", "keep"),
        ("tome", "keep"),
        ("threshold", "threshold"),
    ] {
        let mut r = request(policy);
        match schedule {
            "keep" => r.keep = Some("0.6@0,1,2".into()),
            _ => r.threshold = Some("0.8@0;1.2@2,3".into()),
        }
        let p = Pruner::new(r, None, &w.config.largest_geometry()).unwrap();
        let together = s.run(&encode(&t, &batch), &p).unwrap().items;
        for (i, text) in batch.iter().enumerate() {
            let alone = s
                .run(&encode(&t, std::slice::from_ref(text)), &p)
                .unwrap()
                .items;
            assert_eq!(alone[0].kept, together[i].kept, "{policy}: text {i}");
            let err = alone[0]
                .embedding
                .iter()
                .zip(&together[i].embedding)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < 1e-5, "{policy}: text {i} differs by {err}");
        }
    }
}

#[test]
fn per_layer_thresholds_from_a_file_run_as_the_same_schedule() {
    let (w, t) = model();
    let enc = encode(&t, &texts());
    let mut s = TextSession::new(gpu(), &w).unwrap();
    let file = zeroprune::prune::parse_thresholds("[0, 1.0, 0, 0.5]", "t.json", 4).unwrap();
    let from_file = Pruner::new(
        PruneRequest::default(),
        Some(file),
        &w.config.largest_geometry(),
    )
    .unwrap();
    assert_eq!(from_file.policy().unwrap().name(), "threshold");
    let mut r = request("threshold");
    r.threshold = Some("1.0@1;0.5@3".into());
    let given = Pruner::new(r, None, &w.config.largest_geometry()).unwrap();
    let a = s.run(&enc, &from_file).unwrap().items;
    let b = s.run(&enc, &given).unwrap().items;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.kept, y.kept);
        assert_eq!(x.kept.len(), 2, "layers 0 and 2 have no step");
        assert_eq!(x.embedding, y.embedding);
    }
}

#[test]
fn flops_targets_hold_per_text_and_by_calibration() {
    let (w, t) = model();
    let enc = encode(&t, &texts());
    let c = w.config.clone();
    let mut s = TextSession::new(gpu(), &w).unwrap();
    // Keep rates: each length gets its own schedule, at or under the target where reachable.
    let mut r = request("zero-tprune");
    r.flops = Some(0.7);
    let p = Pruner::new(r, None, &c.largest_geometry()).unwrap();
    for o in s.run(&enc, &p).unwrap().items {
        let ratio = o.flops / zeroprune::session::TextEncoder::flops(&c, o.tokens);
        assert!(
            ratio <= 0.7 + 1e-9 && ratio > 0.55,
            "{} tokens: {ratio}",
            o.tokens
        );
    }
    // Thresholds: one scale for all texts, found by bisection, brings the mean to the target.
    let mut r = request("threshold");
    r.flops = Some(0.6);
    let mut p = Pruner::new(r, None, &c.largest_geometry()).unwrap();
    assert!(p.needs_calibration().unwrap());
    let err = s.run(&enc, &p).unwrap_err().to_string();
    assert!(err.contains("calibration"), "{err}");
    let (scale, reached) = s.calibrate(&enc, &mut p, 8, |_| {}).unwrap();
    assert!(reached <= 0.6 && reached > 0.5, "scale {scale}: {reached}");
    let out = s.run(&enc, &p).unwrap().items;
    let dense: f64 = out
        .iter()
        .map(|o| zeroprune::session::TextEncoder::flops(&c, o.tokens))
        .sum();
    let got: f64 = out.iter().map(|o| o.flops).sum::<f64>() / dense;
    assert!((got - reached).abs() < 1e-12, "{got} vs {reached}");
}

#[test]
fn a_target_a_short_text_cannot_reach_runs_at_the_lowest_it_can() {
    let (w, _) = model();
    let mut r = request("tome");
    r.flops = Some(0.5);
    let p = Pruner::new(r, None, &w.config.largest_geometry()).unwrap();
    // 4 tokens: 2 prunable, ToMe merges at most half per step.
    let g = w.config.geometry(4);
    let short = p.schedule(&g).unwrap();
    let ratio = short.flops(&g) / g.dense_flops();
    assert!(ratio > 0.5 && ratio < 1.0, "{ratio}");
}

#[test]
fn requests_text_refuses_name_the_parameter() {
    let (w, _) = model();
    let c = &w.config;
    let err = |r: PruneRequest, t: Option<Vec<f32>>| {
        Pruner::new(r, t, &c.largest_geometry())
            .unwrap_err()
            .to_string()
    };
    let mut r = request("evit");
    r.keep = Some("0.5@7".into());
    assert!(err(r, None).contains("block 7"));
    let mut r = request("threshold");
    r.threshold = Some("1@1".into());
    assert!(err(r, Some(vec![0.0; 4])).contains("thresholds"));
    assert!(err(request("evit"), Some(vec![0.0; 4])).contains("threshold"));
    assert!(err(PruneRequest::default(), Some(vec![0.0; 3])).contains("4 layers"));
    let json = r#"{"policy":"evit","tokens":"1:5","depth":4,"patches":196}"#;
    let r = PruneRequest {
        schedule: Some(zeroprune::prune::ScheduleFile::parse(json, "s.json").unwrap()),
        ..Default::default()
    };
    assert!(err(r, None).contains("schedule"));
}

#[test]
fn dropped_tokens_are_restated_in_the_mean_or_omitted() {
    let (w, t) = model();
    let c = w.config.clone();
    let enc = encode(&t, &texts()[..2]);
    let mut s = TextSession::new(gpu(), &w).unwrap();
    let mut r = request("evit");
    r.keep = Some("0.5@1,2".into());
    let p = Pruner::new(r, None, &c.largest_geometry()).unwrap();
    let omit = zeroprune::Run::new(&p).dropped(zeroprune::model::Dropped::Omit);
    let a = s.run(&enc, &p).unwrap().items;
    let b = s.run(&enc, omit).unwrap().items;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.kept, y.kept);
        // Omitted: the normalised mean of the surviving rows alone.
        let d = c.hidden_size;
        let rows = y.states.len() / d;
        let mut mean = vec![0.0f64; d];
        for row in y.states.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += *v as f64 / rows as f64;
            }
        }
        let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
        let err = mean
            .iter()
            .zip(&y.embedding)
            .fold(0.0f64, |m, (a, b)| m.max((a / norm - *b as f64).abs()));
        assert!(err < 1e-6, "omit: {err}");
        // Restated: the dropped tokens move the mean.
        let diff = x
            .embedding
            .iter()
            .zip(&y.embedding)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff > 1e-3, "restate equals omit ({diff})");
    }
}
