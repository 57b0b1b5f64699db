//! Text models: BERT configs and weights in every folder layout the issue names (plain `BertModel`,
//! a sentence-transformers folder, a `bert.`-prefixed sequence classifier, all-MiniLM-L6-v2), and
//! tokenisation against the reference ids (`tests/reference/numpy_bert.py`, Python `tokenizers`).
//! Bad text input gets errors naming the file, tensor or text.

use std::path::Path;

use crate::common::text::tokenizer;
use crate::common::{assert_mentions, fixture, read_tensor_i32, shared, text_sentences, with_json};
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

// ------------------------------------------------------------------------------------------------
// Hostile text input: the work is bounded by the model's length, every size by a stated limit.

/// The tokenizers library on its own, cutting at `max` tokens: what `encode` gave before it read
/// long texts a prefix at a time.
fn whole(dir: &Path, max: usize) -> tokenizers::Tokenizer {
    let mut t = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    t.with_padding(None);
    t.with_truncation(Some(tokenizers::TruncationParams {
        max_length: max,
        ..Default::default()
    }))
    .unwrap();
    t
}

/// Texts of every length from a few words to 200 KB, cut from the sentence-polarity sentences
/// (with their tabs, double spaces and newlines), and a few odd ones.
fn long_texts() -> Vec<String> {
    let data = std::fs::read_to_string(shared().join("data/sentence-polarity/sentences.tsv"))
        .expect("the sentence-polarity data");
    let mut out = Vec::new();
    for n in [
        10, 300, 900, 1023, 1024, 1025, 2000, 4095, 4097, 5000, 9000, 20_000, 70_000, 200_000,
    ] {
        for start in [0, 777, 31_337] {
            let mut s: String = data.chars().skip(start).take(n).collect();
            s = s.trim().to_string();
            if !s.is_empty() {
                out.push(s);
            }
        }
    }
    out.push(format!("{}a film", " ".repeat(5000)));
    out.push(format!("a film{}", " \t\n".repeat(5000)));
    out.push("日本語の文章、".repeat(400));
    out.push(format!("{} the end", "x".repeat(3000)));
    out
}

#[test]
fn a_long_text_gives_exactly_the_tokens_of_the_whole_text() {
    for (dir, max) in [
        (fixture("tiny-bert"), 64),
        (fixture("tiny-bert-st"), 12),
        (shared().join("models/all-minilm-l6-v2"), 256),
    ] {
        let w = BertWeights::load(&dir).unwrap();
        assert_eq!(w.config.max_tokens, max);
        let ours = tokenizer(&dir, &w);
        let theirs = whole(&dir, max);
        for text in long_texts() {
            let enc = ours.encode(&[&text]).unwrap();
            let reference = theirs.encode(text.as_str(), true).unwrap();
            assert_eq!(
                enc.ids[0],
                reference.get_ids(),
                "{}: a text of {} bytes",
                dir.display(),
                text.len()
            );
            assert_eq!(
                enc.truncated[0],
                !reference.get_overflowing().is_empty(),
                "{}: a text of {} bytes",
                dir.display(),
                text.len()
            );
        }
    }
}

/// The process's peak resident memory so far, in MB (Linux).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

#[test]
fn a_50_mb_line_or_a_10_mb_word_costs_what_a_sentence_does() {
    // Tokenised whole, the 50 MB line took 60 s and 5.8 GB (all its 10 million tokens and their
    // offsets, before the cut); the 10 MB word 870 MB for one [UNK].
    let dir = shared().join("models/all-minilm-l6-v2");
    let w = BertWeights::load(&dir).unwrap();
    let t = tokenizer(&dir, &w);
    let line = "a dull , overlong film . ".repeat(2 << 20);
    let word = "a".repeat(10 << 20);
    let before = peak_rss_mb();
    let started = std::time::Instant::now();
    let enc = t.encode(&[&line, &word]).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let grew = peak_rss_mb() - before;
    assert!(grew < 200.0, "the peak memory grew by {grew} MB");
    assert!(seconds < 5.0, "{seconds} s");
    // The line: exactly the tokens of its first sentences, cut; the word: one [UNK], cut.
    let reference = whole(&dir, 256).encode(&line[..4000], true).unwrap();
    assert_eq!(enc.ids[0], reference.get_ids());
    assert_eq!(enc.lengths(), vec![256, 3]);
    assert_eq!(enc.truncated, vec![true, true]);
    assert_eq!(t.pieces(&enc.ids[1])[1], "[UNK]");
}

#[test]
fn a_text_the_tokenizer_empties_is_an_error_naming_it() {
    // Control and zero-width characters are removed by BERT's normaliser: the embedding would be
    // that of "[CLS] [SEP]" alone.
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let t = tokenizer(&dir, &w);
    for bad in ["\0\0\0", "\u{1}\u{2}", "\u{200b}\u{200b}", "\u{feff}"] {
        let e = t.encode(&["fine", bad]).expect_err("refused");
        assert_mentions(&e, &["text 2", "gives no token", "control"]);
    }
    let e = t
        .encode_named(&["\0"], |_| "texts.tsv line 7".into())
        .expect_err("refused");
    assert_mentions(&e, &["texts.tsv line 7", "gives no token"]);
}

#[test]
fn more_texts_than_the_limit_are_refused_before_any_is_tokenised() {
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let t = tokenizer(&dir, &w);
    let many = vec!["a"; zeroprune::limits::MAX_TEXTS + 1];
    let e = t.encode(&many).expect_err("refused");
    assert_mentions(&e, &["100001 texts", "over the limit of 100000"]);
}

/// tiny-bert's tokenizer.json edited by `edit`, loaded for the tiny model.
fn edited_tokenizer(edit: impl FnOnce(&mut serde_json::Value)) -> zeroprune::Result<TextTokenizer> {
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer.json")).unwrap())
            .unwrap();
    edit(&mut v);
    TextTokenizer::from_bytes(
        v.to_string().as_bytes(),
        "edited/tokenizer.json",
        64,
        w.config.vocab_size,
    )
}

#[test]
fn a_token_id_beyond_the_embeddings_is_refused_at_load() {
    // As many tokens as the model has rows, but one id past them: it used to fail only on the
    // first text that had the token, naming the text.
    let e = edited_tokenizer(|v| {
        let vocab = v["model"]["vocab"].as_object_mut().unwrap();
        vocab.remove("about");
        vocab.insert("a".into(), serde_json::json!(100000));
    })
    .err()
    .expect("refused");
    assert_mentions(
        &e,
        &[
            "edited/tokenizer.json",
            "\"a\"",
            "id 100000",
            "221 embeddings",
        ],
    );
}

#[test]
fn a_wordpiece_that_matches_words_of_any_length_is_refused() {
    // Greedy longest-match is cubic in a word's length: 40 KB of 4000-letter words took 17 s.
    let e = edited_tokenizer(|v| {
        v["model"]["max_input_chars_per_word"] = serde_json::json!(1_000_000_000_000u64);
    })
    .err()
    .expect("refused");
    assert_mentions(
        &e,
        &[
            "edited/tokenizer.json",
            "max_input_chars_per_word 1000000000000",
            "limit of 200",
        ],
    );
    edited_tokenizer(|v| v["model"]["max_input_chars_per_word"] = serde_json::json!(200))
        .expect("200 is allowed");
}

#[test]
fn a_text_length_outside_the_limits_is_refused() {
    let dir = fixture("tiny-bert");
    let bytes = std::fs::read(dir.join("tokenizer.json")).unwrap();
    for max in [0, 1, zeroprune::limits::MAX_TEXT_POSITIONS + 1] {
        let e = TextTokenizer::from_bytes(&bytes, "tokenizer.json", max, 221)
            .err()
            .expect("refused");
        assert_mentions(&e, &["max_tokens", &max.to_string()]);
    }
}

#[test]
fn config_sizes_over_the_limits_name_the_field() {
    for (field, value, shown) in [
        (
            "num_hidden_layers",
            100_000usize,
            "num_hidden_layers 100000 is over the limit of 1024",
        ),
        (
            "max_position_embeddings",
            1_000_000_000,
            "max_position_embeddings 1000000000 is over the limit of 8192",
        ),
        (
            "vocab_size",
            1 << 21,
            "vocab_size 2097152 is over the limit",
        ),
        (
            "type_vocab_size",
            1 << 40,
            "type_vocab_size 1099511627776 is over the limit",
        ),
        (
            "hidden_size",
            1 << 20,
            "hidden_size 1048576 is over the limit",
        ),
        (
            "intermediate_size",
            1 << 30,
            "intermediate_size 1073741824 is over the limit",
        ),
        ("max_position_embeddings", 1, "at least 2"),
    ] {
        let dir = with_json("tiny-bert", "config.json", |c| {
            c[field] = serde_json::json!(value);
            if field == "hidden_size" {
                c["num_attention_heads"] = serde_json::json!(1);
            }
        });
        let e = BertWeights::load(dir.path()).expect_err("refused");
        assert_mentions(&e, &["config.json", shown]);
    }
}

#[test]
fn labels_that_do_not_match_the_classifier_are_refused() {
    // Three names for a two-class classifier: they used to be replaced by LABEL_0, LABEL_1.
    let dir = with_json("tiny-bert-cls", "config.json", |c| {
        c["id2label"] = serde_json::json!({"0": "negative", "1": "neutral", "2": "positive"});
    });
    let e = BertWeights::load(dir.path()).expect_err("refused");
    assert_mentions(
        &e,
        &[
            "config.json",
            "id2label names 3 classes",
            "classifier.weight",
            "has 2",
        ],
    );
    // No names at all: numbered ones.
    let dir = with_json("tiny-bert-cls", "config.json", |c| {
        c.as_object_mut().unwrap().remove("id2label");
    });
    let w = BertWeights::load(dir.path()).unwrap();
    assert_eq!(w.config.labels, vec!["LABEL_0", "LABEL_1"]);
}

/// A head file's bytes: `weight [shape]` and `bias [shape]` as f32, plus `extra` tensors.
fn head_bytes(weight: (&[usize], f32), bias: (&[usize], f32), extra: &[&str]) -> Vec<u8> {
    let mut t = crate::common::Tensors::new();
    let mut put = |name: &str, (shape, v): (&[usize], f32)| {
        let n = shape.iter().product::<usize>();
        let values = (0..n).map(|i| if i == n / 2 { v } else { 0.01 });
        t.insert(
            name.into(),
            (
                safetensors::Dtype::F32,
                shape.to_vec(),
                crate::common::f32_bytes(values),
            ),
        );
    };
    put("weight", weight);
    put("bias", bias);
    for e in extra {
        put(e, (&[1], 0.0));
    }
    crate::common::serialize(&t)
}

#[test]
fn a_bad_head_is_refused_naming_the_tensor() {
    use zeroprune::eval::head::Head;
    let d = 32;
    let ok = Head::from_bytes(&head_bytes((&[2, d], 0.1), (&[2], 0.0), &[]), "h.st", d).unwrap();
    assert_eq!(ok.classes(), 2);
    for (bytes, shown) in [
        // A NaN made every prediction class 0; an infinite bias, every one the same class.
        (
            head_bytes((&[2, d], f32::NAN), (&[2], 0.0), &[]),
            vec!["`weight`", "NaN", "index 32"],
        ),
        (
            head_bytes((&[2, d], 0.1), (&[2], f32::INFINITY), &[]),
            vec!["`bias`", "inf", "index 1"],
        ),
        (
            head_bytes((&[0, d], 0.1), (&[0], 0.0), &[]),
            vec!["`weight`", "no classes"],
        ),
        (
            head_bytes((&[2, 100], 0.1), (&[2], 0.0), &[]),
            vec!["`weight`", "[2, 100]", "[2, 32]"],
        ),
        (
            head_bytes((&[2, d], 0.1), (&[3], 0.0), &[]),
            vec!["`bias`", "[3]", "expected [2]"],
        ),
        (
            head_bytes((&[2, d, 1], 0.1), (&[2], 0.0), &[]),
            vec!["`weight`", "[2, 32, 1]"],
        ),
        (
            head_bytes((&[2, d], 0.1), (&[2], 0.0), &["scale"]),
            vec!["`scale`", "not part of a linear head"],
        ),
    ] {
        let e = Head::from_bytes(&bytes, "h.st", d).err().expect("refused");
        let mut parts = vec!["h.st"];
        parts.extend(shown);
        assert_mentions(&e, &parts);
    }
}

#[test]
fn labels_a_classifier_cannot_predict_are_refused_naming_the_line() {
    use zeroprune::eval::data::parse_labelled;
    use zeroprune::eval::head::Head;
    let data =
        "split\tlabel\tsentence\ntest\t1\tgood\ntest\t0\tbad\ntrain\t1\tfine\ntest\t2\tmeh\n";
    let items = parse_labelled(data, "texts.tsv", "test").unwrap();
    let head =
        Head::from_bytes(&head_bytes((&[2, 32], 0.1), (&[2], 0.0), &[]), "h.st", 32).unwrap();
    let e = head
        .check_labels(&items, Path::new("texts.tsv"))
        .expect_err("refused");
    assert_mentions(&e, &["texts.tsv line 5", "label 2", "head h.st", "has 2"]);
    // The model's own classifier: its class count.
    let w = BertWeights::load(&fixture("tiny-bert-cls")).unwrap();
    let e = zeroprune::eval::head::check_labels(None, &w, &items, Path::new("texts.tsv"))
        .expect_err("refused");
    assert_mentions(
        &e,
        &["texts.tsv line 5", "label 2", "classifier of", "has 2"],
    );
    zeroprune::eval::head::check_labels(None, &w, &items[..2], Path::new("texts.tsv"))
        .expect("labels 0 and 1");
    // A model without a classifier and no head.
    let plain = BertWeights::load(&fixture("tiny-bert")).unwrap();
    let e = zeroprune::eval::head::check_labels(None, &plain, &items, Path::new("texts.tsv"))
        .expect_err("refused");
    assert_mentions(&e, &["--head", "no classifier"]);
}

#[test]
fn a_labelled_file_names_the_line_or_the_split_at_fault() {
    use zeroprune::eval::data::{labelled_texts, parse_labelled};
    let e = parse_labelled("test\t1\t \t\ntest\t0\tok\n", "texts.tsv", "test")
        .err()
        .unwrap();
    assert_mentions(&e, &["texts.tsv line 1", "sentence is empty"]);
    for label in ["-1", "pos", "99999999999999999999999"] {
        let e = parse_labelled(&format!("test\t{label}\tok\n"), "texts.tsv", "test")
            .err()
            .unwrap();
        assert_mentions(&e, &["texts.tsv line 1", label, "not a class index"]);
    }
    let e = parse_labelled("test\t1\tok\ntrain\t0\tok\n", "texts.tsv", "dev")
        .err()
        .unwrap();
    assert_mentions(
        &e,
        &[
            "texts.tsv",
            "no line of split `dev`",
            "its splits: `test`, `train`",
        ],
    );
    // Skip, limit and the number of texts, as for images.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("texts.tsv");
    std::fs::write(&path, "test\t1\ta\ntest\t0\tb\ntest\t1\tc\n").unwrap();
    assert_eq!(
        labelled_texts(&path, "test", (1, Some(1))).unwrap()[0].text,
        "b"
    );
    let e = labelled_texts(&path, "test", (0, Some(0))).err().unwrap();
    assert_mentions(&e, &["--limit", "at least 1"]);
    let e = labelled_texts(&path, "test", (3, None)).err().unwrap();
    assert_mentions(
        &e,
        &[
            "--skip",
            "texts.tsv has 3 texts of split `test`",
            "skipping 3",
        ],
    );
    let many = "test\t0\tx\n".repeat(zeroprune::limits::MAX_TEXTS + 1);
    std::fs::write(&path, many).unwrap();
    let e = labelled_texts(&path, "test", (0, None)).err().unwrap();
    assert_mentions(&e, &["--limit", "100001 texts", "over the limit of 100000"]);
    assert_eq!(
        labelled_texts(&path, "test", (5, Some(100_000)))
            .unwrap()
            .len(),
        99_996
    );
}

#[test]
fn text_options_are_checked_as_the_browser_passes_them() {
    use zeroprune::text::text_pruner;
    let c = BertWeights::load(&fixture("tiny-bert")).unwrap().config;
    let ok = |v: serde_json::Value| text_pruner(&v, &c).map(|(p, d)| (p.describe(), d));
    assert_eq!(ok(serde_json::Value::Null).unwrap().0, "dense");
    let (p, d) =
        ok(serde_json::json!({"policy": "tome", "flops": 0.7, "dropped": "omit", "seed": null}))
            .unwrap();
    assert!(p.contains("tome"), "{p}");
    assert_eq!(d, zeroprune::model::Dropped::Omit);
    ok(serde_json::json!({"thresholds": [0.5, 0]})).expect("one per layer");
    for (v, shown) in [
        (
            serde_json::json!([1]),
            vec!["options", "must be an object", "an array"],
        ),
        (
            serde_json::json!({"dropped": 3}),
            vec!["dropped", "a number"],
        ),
        (
            serde_json::json!({"dropped": "both"}),
            vec!["dropped", "'both'"],
        ),
        (
            serde_json::json!({"thresholds": [0.5]}),
            vec!["options.thresholds", "1 thresholds", "2 layers"],
        ),
        (
            serde_json::json!({"thresholds": [0.5, 1e300]}),
            vec!["options.thresholds", "layer 1", "f32"],
        ),
        (
            serde_json::json!({"thresholds": [0.5, 1], "policy": "tome"}),
            vec!["thresholds", "--policy threshold"],
        ),
        (
            serde_json::json!({"policy": "tome", "flops": 0.7, "bogus": 1}),
            vec!["options", "bogus"],
        ),
        (
            serde_json::json!({"policy": "tome", "keep": "0.5@9"}),
            vec!["9"],
        ),
    ] {
        let e = ok(v.clone())
            .err()
            .unwrap_or_else(|| panic!("{v} accepted"));
        assert_mentions(&e, &shown);
    }
}

#[test]
fn a_run_checks_its_batch_and_calibration_needs_texts() {
    use zeroprune::prune::{PruneRequest, Pruner};
    use zeroprune::{Run, TextSession};
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    let t = tokenizer(&dir, &w);
    let enc = t.encode(&["a fine film", "dull"]).unwrap();
    let mut s = TextSession::new(crate::common::gpu(), &w).unwrap();
    for (batch, shown) in [(0, "at least 1"), (1 << 40, "over the limit of 4096")] {
        let e = s
            .run_all(&enc, Run::new(&Pruner::dense()), batch, |_| {})
            .expect_err("refused");
        assert_mentions(&e, &["--batch", shown]);
    }
    // One forward pass of more items than a batch may hold (bench --texts, the browser's embed).
    let many = t
        .encode(&vec!["a film"; zeroprune::limits::MAX_BATCH + 1])
        .unwrap();
    let e = s.run(&many, &Pruner::dense()).expect_err("refused");
    assert_mentions(
        &e,
        &["4097 items in one forward pass", "over the limit of 4096"],
    );
    // A long run keeps summaries: embeddings, not every token's states.
    let out = s
        .run_all(&enc, Run::new(&Pruner::dense()), 2, |_| {})
        .unwrap();
    assert!(out
        .iter()
        .all(|o| o.states.is_empty() && o.embedding.len() == 32));
    // Calibrating on no text gave "thresholds x 64 give NaN of the dense FLOPs".
    let request = PruneRequest {
        policy: Some("threshold".into()),
        flops: Some(0.7),
        ..Default::default()
    };
    let mut p = Pruner::new(request, None, &w.config.largest_geometry()).unwrap();
    let none = zeroprune::text::Encoded {
        ids: vec![],
        truncated: vec![],
    };
    let e = s.calibrate(&none, &mut p, 8, |_| {}).expect_err("refused");
    assert_mentions(&e, &["calibration", "nothing to calibrate on"]);
}

#[test]
fn a_text_too_short_to_reach_a_flops_target_runs_dense() {
    // "a" is [CLS] a [SEP]: ToMe cannot halve one token, so no target up to 1 was reachable and
    // `embed --policy tome --flops 0.7 a` failed; with no prunable token at all (found by the
    // text-options fuzz target) the schedule's clamp(1, 0) panicked.
    use zeroprune::prune::{PruneRequest, Pruner};
    use zeroprune::{Run, TextSession};
    let dir = fixture("tiny-bert");
    let w = BertWeights::load(&dir).unwrap();
    for policy in ["tome", "pitome", "zero-tprune", "evit"] {
        // With --at, a target the longest text reaches (one merging block cannot reach 0.7).
        let request = PruneRequest {
            policy: Some(policy.into()),
            flops: Some(if policy == "pitome" { 0.95 } else { 0.7 }),
            at: (policy == "pitome").then(|| "1".into()),
            ..Default::default()
        };
        let p = Pruner::new(request, None, &w.config.largest_geometry()).unwrap();
        let s = p.schedule(&w.config.geometry(2)).expect(policy);
        assert!(s.is_dense(), "{policy} at 2 tokens: {s:?}");
        p.schedule(&w.config.geometry(3)).expect(policy);
        let enc = tokenizer(&dir, &w).encode(&["a"]).unwrap();
        let mut s = TextSession::new(crate::common::gpu(), &w).unwrap();
        let out = s.run(&enc, Run::new(&p)).expect(policy).items;
        assert_eq!(out[0].tokens, 3);
    }
}

#[test]
fn what_the_tokenizers_library_takes_on_trust_is_checked_at_load() {
    // Each of these panicked inside the tokenizers library (found by the text-loader fuzz target).
    let e = edited_tokenizer(|v| {
        let tokens = v["post_processor"]["special_tokens"]
            .as_object_mut()
            .unwrap();
        let sep = tokens.remove("[SEP]").unwrap();
        tokens.insert("eSEP]".into(), sep);
    })
    .err()
    .expect("refused");
    assert_mentions(
        &e,
        &[
            "edited/tokenizer.json",
            "post_processor.single",
            "\"[SEP]\"",
            "does not define",
        ],
    );
    let e = edited_tokenizer(|v| {
        v["post_processor"]["special_tokens"]["[CLS]"]["ids"] = serde_json::json!([100000]);
    })
    .err()
    .expect("refused");
    assert_mentions(
        &e,
        &["special token \"[CLS]\"", "id 100000", "221 embeddings"],
    );
    let dir = fixture("tiny-bert");
    let text = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    let decoder = text.find("\"decoder\"").expect("a decoder");
    let wordpiece = decoder + text[decoder..].find("\"WordPiece\"").unwrap();
    // A lone surrogate escape (valid JSON syntax, not a string), a raw control character.
    for bad in ["\"\\udc00\"", "\"\u{1}\""] {
        let broken = format!("{}{bad}{}", &text[..wordpiece], &text[wordpiece + 11..]);
        let e = TextTokenizer::from_bytes(broken.as_bytes(), "tokenizer.json", 64, 221)
            .err()
            .expect("refused");
        assert_mentions(&e, &["tokenizer.json", "not JSON"]);
    }
}
