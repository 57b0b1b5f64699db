//! Every pruning policy on text against the independent reference
//! (`tests/reference/prune_text_reference.py`, which runs `prune_reference.py`'s policies inside
//! its own BERT forward): on the same models and texts, the GPU keeps the same tokens at every
//! step, and gives the same embeddings and FLOPs. The tiny cases use a 4-layer random BERT; the
//! `minilm` cases the real all-MiniLM-L6-v2 from `../shared`.

use crate::common::{cosine, gpu, prune_texts, read_tensor, read_tensor_i32, repo};
use zeroprune::model::bert::BertWeights;
use zeroprune::prune::PruneRequest;
use zeroprune::prune::Pruner;
use zeroprune::text::TextTokenizer;
use zeroprune::TextSession;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    model: String,
    texts: String,
    policy: String,
    args: Vec<String>,
    file: String,
}

fn cases() -> Vec<Case> {
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/text/prune-cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The reference's CLI arguments as a request.
fn request(case: &Case) -> PruneRequest {
    let mut r = PruneRequest {
        policy: Some(case.policy.clone()),
        ..Default::default()
    };
    for pair in case.args.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair[1].clone());
        match k {
            "--keep" => r.keep = Some(v),
            "--threshold" => r.threshold = Some(v),
            "--sim" => r.sim = Some(v.parse().unwrap()),
            "--heads" => r.heads = Some(v),
            "--seed" => r.seed = Some(v.parse().unwrap()),
            "--iters" => r.iters = Some(v.parse().unwrap()),
            "--protect" => r.protect = Some(v.parse().unwrap()),
            other => panic!("{}: unknown reference argument {other}", case.name),
        }
    }
    r
}

fn run_case(case: &Case) {
    let dir = repo().join(&case.model);
    let weights = BertWeights::load(&dir).unwrap();
    let c = weights.config.clone();
    let tokenizer =
        TextTokenizer::load(&dir.join("tokenizer.json"), c.max_tokens, c.vocab_size).unwrap();
    let texts = prune_texts(&case.texts);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer.encode(&refs).unwrap();
    let pruning = Pruner::new(request(case), None, &c.largest_geometry()).unwrap();
    let mut session = TextSession::new(gpu(), &weights).unwrap();
    let out = session.run(&enc, &pruning).unwrap().items;

    let file = repo().join(&case.file);
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let steps = (0..)
        .take_while(|s| st.tensor(&format!("kept.{s}")).is_ok())
        .count();
    for (t, o) in out.iter().enumerate() {
        assert_eq!(
            o.kept.len(),
            steps,
            "{}: text {t} ran {} steps, the reference {steps}",
            case.name,
            o.kept.len()
        );
        for s in 0..steps {
            let (shape, kept) = read_tensor_i32(&file, &format!("kept.{s}"));
            let want: Vec<u32> = kept[t * shape[1]..][..shape[1]]
                .iter()
                .filter(|&&k| k >= 0)
                .map(|&k| k as u32)
                .collect();
            assert_eq!(
                o.kept[s], want,
                "{}: text {t} step {s} keeps different tokens",
                case.name
            );
        }
    }
    let (shape, want) = read_tensor(&file, "embeddings");
    let d = shape[1];
    let mut worst: f64 = 1.0;
    for (t, o) in out.iter().enumerate() {
        worst = worst.min(cosine(&o.embedding, &want[t * d..][..d]));
    }
    assert!(
        worst >= 0.99999,
        "{}: embedding cosine to the reference {worst}",
        case.name
    );
    let flops = st.tensor("flops").unwrap();
    let want_flops: Vec<f64> = flops
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (t, o) in out.iter().enumerate() {
        let rel = (o.flops - want_flops[t]).abs() / want_flops[t];
        assert!(
            rel < 1e-9,
            "{}: text {t} FLOPs {} vs {}",
            case.name,
            o.flops,
            want_flops[t]
        );
    }
    eprintln!(
        "{:<22} {:<32} embeddings cosine >= {worst:.7}",
        case.name,
        case.args.join(" ")
    );
}

#[test]
fn every_policy_keeps_the_reference_tokens_on_tiny_bert() {
    let cases: Vec<Case> = cases().into_iter().filter(|c| c.texts == "tiny").collect();
    assert!(cases.len() >= 15, "{} tiny cases", cases.len());
    for case in &cases {
        run_case(case);
    }
}

#[test]
fn policies_keep_the_reference_tokens_on_minilm() {
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| c.texts == "minilm")
        .collect();
    assert!(cases.len() >= 4);
    for case in &cases {
        run_case(case);
    }
}
