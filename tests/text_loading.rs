//! Text models: BERT configs and weights in every folder layout the issue names (plain `BertModel`,
//! a sentence-transformers folder, a `bert.`-prefixed sequence classifier, all-MiniLM-L6-v2), and
//! tokenisation against the reference ids (`tests/reference/numpy_bert.py`, Python `tokenizers`).
//! Bad text input gets errors naming the file, tensor or text.

mod common;

use std::path::Path;

use common::{assert_mentions, fixture, read_tensor_i32, shared, text_sentences, with_json};
use zeroprune::model::bert::{BertWeights, Pooling};
use zeroprune::text::TextTokenizer;

/// The reference's ids per text, padding removed.
fn reference_ids(path: &Path) -> Vec<Vec<u32>> {
    let (shape, ids) = read_tensor_i32(path, "ids");
    let (_, lengths) = read_tensor_i32(path, "lengths");
    (0..shape[0])
        .map(|i| {
            ids[i * shape[1]..i * shape[1] + lengths[i] as usize]
                .iter()
                .map(|&x| x as u32)
                .collect()
        })
        .collect()
}

fn tokenizer(dir: &Path, w: &BertWeights) -> TextTokenizer {
    TextTokenizer::load(
        &dir.join("tokenizer.json"),
        w.config.max_tokens,
        w.config.vocab_size,
    )
    .expect("the tokenizer loads")
}

#[test]
fn a_plain_bert_loads_and_tokenizes_like_the_reference() {
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).expect("tiny-bert loads");
    let c = &w.config;
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.intermediate_size
        ),
        (2, 32, 4, 64)
    );
    assert_eq!(
        (c.max_tokens, c.pooling, c.normalize),
        (64, Pooling::Mean, false)
    );
    assert!(w.classifier.is_none() && c.labels.is_empty());
    assert_eq!(w.layers.len(), 2);
    // q, k and v side by side, as the ViT's qkv.
    assert_eq!(w.layers[0].qkv.w.len(), 32 * 96);
    let texts = text_sentences("tiny");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer(&dir, &w).encode(&refs).unwrap();
    assert_eq!(enc.ids, reference_ids(&dir.join("reference.safetensors")));
    // The two longest texts are cut at the model's 64 positions, [SEP] last.
    assert_eq!(enc.truncated, vec![false, false, true, true]);
    assert_eq!(enc.lengths(), vec![13, 31, 64, 64]);
}

#[test]
fn a_sentence_transformers_folder_sets_the_cut_pooling_and_normalisation() {
    let dir = fixture("tiny-bert-st");
    let w = BertWeights::load(&dir).expect("tiny-bert-st loads");
    assert_eq!(
        (w.config.max_tokens, w.config.pooling, w.config.normalize),
        (12, Pooling::Mean, true)
    );
    let texts = text_sentences("tiny");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer(&dir, &w).encode(&refs).unwrap();
    assert_eq!(enc.ids, reference_ids(&dir.join("reference.safetensors")));
    assert!(enc.truncated.iter().all(|&t| t));
}

#[test]
fn a_prefixed_sequence_classifier_loads_its_head_and_labels() {
    let dir = fixture("tiny-bert-cls");
    let w = BertWeights::load(&dir).expect("tiny-bert-cls loads");
    let head = w.classifier.as_ref().expect("a classifier");
    assert_eq!((head.classifier.inp(), head.classifier.out()), (32, 2));
    assert_eq!(w.config.labels, vec!["negative", "positive"]);
}

#[test]
fn minilm_tokenizes_real_sentences_like_the_reference() {
    let dir = shared().join("models/all-minilm-l6-v2");
    let w = BertWeights::load(&dir).expect("all-MiniLM-L6-v2 loads");
    let c = &w.config;
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.num_heads,
            c.vocab_size,
            c.max_tokens
        ),
        (6, 384, 12, 30522, 256)
    );
    assert!(c.normalize && c.pooling == Pooling::Mean);
    let texts = text_sentences("minilm");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer(&dir, &w).encode(&refs).unwrap();
    assert_eq!(
        enc.ids,
        reference_ids(&fixture("text/minilm-reference.safetensors"))
    );
    assert_eq!(enc.lengths(), vec![5, 14, 24, 54, 14, 39]);
}

// ------------------------------------------------------------------------------------------------
// Bad input

#[test]
fn an_empty_text_is_an_error_naming_it() {
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let t = tokenizer(&dir, &w);
    let e = t.encode(&["fine", "  \t "]).expect_err("refused");
    assert_mentions(&e, &["text 2", "empty"]);
}

#[test]
fn a_missing_or_corrupt_tokenizer_names_the_file() {
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let e = TextTokenizer::load(&tmp.path().join("tokenizer.json"), 64, w.config.vocab_size)
        .err()
        .expect("missing");
    assert_mentions(&e, &["tokenizer.json"]);
    let bad = tmp.path().join("tokenizer.json");
    std::fs::write(&bad, "{\"model\": 3}").unwrap();
    let e = TextTokenizer::load(&bad, 64, w.config.vocab_size)
        .err()
        .expect("corrupt");
    assert_mentions(&e, &["tokenizer.json", "not a tokenizer.json"]);
}

#[test]
fn a_vocabulary_that_does_not_match_the_embeddings_is_an_error() {
    // MiniLM's 30522-token tokenizer with the tiny model's 222-row embedding matrix.
    let w = BertWeights::load(&fixture("tiny-bert")).unwrap();
    let minilm = shared().join("models/all-minilm-l6-v2/tokenizer.json");
    let e = TextTokenizer::load(&minilm, 64, w.config.vocab_size)
        .err()
        .expect("refused");
    assert_mentions(&e, &["30522 tokens", "embedding matrix", "rows"]);
}

#[test]
fn a_config_that_contradicts_the_weights_names_what_differs() {
    let dir = with_json("tiny-bert", "config.json", |c| {
        c["num_hidden_layers"] = serde_json::json!(1);
    });
    let e = BertWeights::load(dir.path()).expect_err("refused");
    assert_mentions(&e, &["encoder.layer.1", "num_hidden_layers"]);
    let dir = with_json("tiny-bert", "config.json", |c| {
        c["vocab_size"] = serde_json::json!(100);
    });
    let e = BertWeights::load(dir.path()).expect_err("refused");
    assert_mentions(&e, &["embeddings.word_embeddings.weight", "[100, 32]"]);
    let dir = with_json("tiny-bert-cls", "config.json", |c| {
        c["id2label"] = serde_json::json!({"0": "negative", "5": "positive"});
    });
    let e = BertWeights::load(dir.path()).expect_err("refused");
    assert_mentions(&e, &["id2label", "class 5"]);
}
