//! The BERT forward pass on the GPU against the NumPy reference (`tests/reference/numpy_bert.py`):
//! the output states of every real token, the pooled embeddings (cosine >= 0.99999) and a
//! classifier's logits, for padded batches of texts of different lengths: the tiny BERTs and
//! all-MiniLM-L6-v2 on real sentences.

use std::path::Path;

use crate::common::text::{self, tokenizer};
use crate::common::{cosine, fixture, gpu, read_tensor, shared, text_sentences};
use zeroprune::model::bert::BertWeights;
use zeroprune::prune::Pruner;
use zeroprune::text::Encoded;
use zeroprune::TextSession;

/// `texts` as one batch, tokenised by the model folder `dir`'s tokenizer.
fn encode(dir: &Path, w: &BertWeights, texts: &[String]) -> Encoded {
    text::encode(&tokenizer(dir, w), texts)
}

/// Run `dir`'s model on the tiny sentences and compare everything with its reference.
fn check_tiny(name: &str) -> Vec<zeroprune::TextOutput> {
    let dir = fixture(name);
    let w = BertWeights::load(&dir).unwrap();
    let enc = encode(&dir, &w, &text_sentences("tiny"));
    let mut s = TextSession::new(gpu(), &w).expect("session");
    let out = s.run(&enc, &Pruner::dense()).expect("runs").items;
    let reference = dir.join("reference.safetensors");
    let (shape, hidden) = read_tensor(&reference, "hidden");
    let (_, emb) = read_tensor(&reference, "embeddings");
    let (t, d) = (shape[1], shape[2]);
    for (b, o) in out.iter().enumerate() {
        let n = enc.ids[b].len();
        let want = &hidden[b * t * d..][..n * d];
        let err = o
            .states
            .iter()
            .zip(want)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-4, "{name} text {b}: states differ by {err}");
        let cos = cosine(&o.embedding, &emb[b * d..][..d]);
        eprintln!(
            "{name} text {b}: {n} tokens, states within {err:.2e}, cosine 1 - {:.1e}",
            1.0 - cos
        );
        assert!(cos >= 0.99999, "{name} text {b}: cosine {cos}");
    }
    out
}

#[test]
fn tiny_bert_matches_the_reference_in_a_padded_batch() {
    let out = check_tiny("tiny-bert");
    // Without a Normalize module the mean is not normalised.
    let norm: f32 = out[0].embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-3, "norm {norm}");
}

#[test]
fn a_sentence_transformers_folder_cuts_and_normalises_like_the_reference() {
    let out = check_tiny("tiny-bert-st");
    for o in &out {
        assert_eq!(o.states.len(), 12 * 32);
        let norm: f32 = o.embedding.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[test]
fn a_sequence_classifier_gives_the_reference_logits() {
    let out = check_tiny("tiny-bert-cls");
    let (_, logits) = read_tensor(&fixture("tiny-bert-cls/reference.safetensors"), "logits");
    for (b, o) in out.iter().enumerate() {
        for (x, y) in o.logits.iter().zip(&logits[b * 2..][..2]) {
            assert!(
                (x - y).abs() < 1e-4,
                "text {b}: {:?} vs {:?}",
                o.logits,
                &logits[b * 2..][..2]
            );
        }
    }
}

#[test]
fn padding_never_changes_a_text() {
    // Each text alone gives what it gives in the padded batch.
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let texts = text_sentences("tiny");
    let mut s = TextSession::new(gpu(), &w).unwrap();
    let batch = s
        .run(&encode(&dir, &w, &texts), &Pruner::dense())
        .unwrap()
        .items;
    for (i, text) in texts.iter().enumerate() {
        let alone = s
            .run(
                &encode(&dir, &w, std::slice::from_ref(text)),
                &Pruner::dense(),
            )
            .unwrap()
            .items;
        let err = alone[0]
            .states
            .iter()
            .zip(&batch[i].states)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(err < 1e-5, "text {i}: alone and batched differ by {err}");
    }
}

#[test]
fn minilm_embeds_real_sentences_like_the_reference() {
    let dir = shared().join("models/all-minilm-l6-v2");
    let w = BertWeights::load(&dir).unwrap();
    let enc = encode(&dir, &w, &text_sentences("minilm"));
    let mut s = TextSession::new(gpu(), &w).unwrap();
    let out = s.run(&enc, &Pruner::dense()).unwrap().items;
    let (_, emb) = read_tensor(&fixture("text/minilm-reference.safetensors"), "embeddings");
    let d = 384;
    for (b, o) in out.iter().enumerate() {
        let cos = cosine(&o.embedding, &emb[b * d..][..d]);
        eprintln!(
            "MiniLM sentence {b}: {} tokens, cosine 1 - {:.1e}",
            enc.ids[b].len(),
            1.0 - cos
        );
        assert!(cos >= 0.99999, "sentence {b}: cosine {cos}");
    }
}

/// The text encoder plays its program the three ways the image model does: step by step (every
/// step's outputs read back, the same embeddings), profiled (a time per step, pruning steps in
/// their phases), and with f16 storage (close to f32).
#[test]
fn text_runs_step_by_step_profiled_and_in_f16() {
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let enc = encode(&dir, &w, &text_sentences("tiny"));
    let mut s = TextSession::new(gpu(), &w).unwrap();
    let request = zeroprune::prune::PruneRequest {
        policy: Some("tome".into()),
        keep: Some("0.8@0,1".into()),
        ..Default::default()
    };
    let p = Pruner::new(request, None, &w.config.largest_geometry()).unwrap();
    let normal = s.run(&enc, &p).unwrap();
    let debug = s
        .run(&enc, zeroprune::Run::new(&p).mode(zeroprune::Mode::Debug))
        .unwrap();
    let trace = debug.trace.expect("a debug run returns its trace");
    assert!(trace.iter().any(|t| t.label.contains("prune.merge")));
    assert!(trace.iter().any(|t| t.label.starts_with("layer1.fc2")));
    for (a, b) in normal.items.iter().zip(&debug.items) {
        assert_eq!(a.kept, b.kept);
        assert!(cosine(&a.embedding, &b.embedding) > 0.999999);
    }
    let profiled = s
        .run(&enc, zeroprune::Run::new(&p).mode(zeroprune::Mode::Profile))
        .unwrap();
    let profile = profiled.profile.expect("a profiled run returns its times");
    assert!(profile.iter().all(|t| t.seconds >= 0.0));
    assert!(profile.iter().any(|t| t.phase.is_pruning()));
    if !gpu().has_f16() {
        eprintln!("f16: skipped, the adapter has no shader-f16");
        return;
    }
    let mut half =
        TextSession::with_precision(gpu(), &w, zeroprune::model::Precision::F16).unwrap();
    assert_eq!(half.storage(), zeroprune::gpu::kernel::Elem::F16);
    let dense_f32 = s.run(&enc, &Pruner::dense()).unwrap().items;
    let dense_f16 = half.run(&enc, &Pruner::dense()).unwrap().items;
    for (a, b) in dense_f32.iter().zip(&dense_f16) {
        let c = cosine(&a.embedding, &b.embedding);
        eprintln!("f16 against f32: cosine 1 - {:.1e}", 1.0 - c);
        assert!(c > 0.9999, "f16 embedding cosine {c}");
    }
}
