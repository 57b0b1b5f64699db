//! `zeroprune embed` and `zeroprune similarity` end to end on the tiny sentence-transformers
//! fixture: the JSON fields, input order, the cut warning, and bad text input.

mod common;

use std::process::Command;

use common::{fixture, read_tensor, text_sentences};

fn zeroprune() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zeroprune"));
    c.env_remove("ZEROPRUNE_MODEL");
    c
}

#[test]
fn embed_json_gives_one_embedding_per_text_in_input_order() {
    let texts = text_sentences("tiny");
    let dir = tempfile::tempdir().unwrap();
    // Two texts as arguments, two from a file (with a blank line and CRLF endings).
    let file = dir.path().join("texts.txt");
    std::fs::write(&file, format!("{}\r\n\n{}\n", texts[2], texts[3])).unwrap();
    let out = zeroprune()
        .args(["embed", "--json", "--batch", "3", "--model"])
        .arg(fixture("tiny-bert-st"))
        .args(&texts[..2])
        .arg("--file")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Every tiny text is longer than the folder's 12 tokens.
    assert!(
        stderr.contains("text 4 was cut to the model's 12 tokens"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dim"], 32);
    assert_eq!(v["tokens"], serde_json::json!([12, 12, 12, 12]));
    assert_eq!(v["truncated"], serde_json::json!([true, true, true, true]));
    let gflops = v["gflops_per_text"].as_array().unwrap();
    assert!(gflops.iter().all(|g| g.as_f64().unwrap() > 0.0));
    let (_, want) = read_tensor(&fixture("tiny-bert-st/reference.safetensors"), "embeddings");
    let got = v["embeddings"].as_array().unwrap();
    assert_eq!(got.len(), 4);
    for (i, e) in got.iter().enumerate() {
        let e: Vec<f64> = e
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let dot: f64 = e
            .iter()
            .zip(&want[i * 32..][..32])
            .map(|(a, b)| a * *b as f64)
            .sum();
        assert!(dot > 0.99999, "text {i}: cosine {dot}");
    }
}

#[test]
fn similarity_prints_the_cosine() {
    let texts = text_sentences("tiny");
    let out = zeroprune()
        .args(["similarity", "--json", "--model"])
        .arg(fixture("tiny-bert"))
        .args([&texts[0], &texts[0]])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!((v["cosine"].as_f64().unwrap() - 1.0).abs() < 1e-6, "{v}");
}

#[test]
fn bad_text_input_names_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = zeroprune().args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let model = fixture("tiny-bert");
    // Invalid UTF-8 on line 2.
    let file = dir.path().join("bad.txt");
    std::fs::write(&file, b"fine\nnot \xff utf-8\n").unwrap();
    let err = run(&[
        "embed".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--file".as_ref(),
        file.as_os_str(),
    ]);
    assert!(
        err.contains("bad.txt line 2") && err.contains("not UTF-8"),
        "{err}"
    );
    // An empty text.
    let err = run(&[
        "embed".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "fine".as_ref(),
        "  ".as_ref(),
    ]);
    assert!(err.contains("text 2") && err.contains("empty"), "{err}");
    // No text at all.
    let err = run(&["embed".as_ref(), "--model".as_ref(), model.as_os_str()]);
    assert!(err.contains("--file"), "{err}");
    // A folder without tokenizer.json.
    let copy = common::with_json("tiny-bert", "config.json", |_| {});
    let err = run(&[
        "embed".as_ref(),
        "--model".as_ref(),
        copy.path().as_os_str(),
        "x".as_ref(),
    ]);
    assert!(err.contains("tokenizer.json"), "{err}");
}

/// A `split<TAB>label<TAB>sentence` file of the tiny sentences, labelled by `label(i)`.
fn labelled_file(dir: &std::path::Path, label: impl Fn(usize) -> usize) -> std::path::PathBuf {
    let mut text = String::from("split\tlabel\tsentence\n");
    for (i, s) in text_sentences("tiny").iter().enumerate() {
        text += &format!("test\t{}\t{s}\n", label(i));
        text += &format!("train\t0\t{s}\n");
    }
    let path = dir.join("texts.tsv");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn eval_on_texts_uses_the_model_classifier_or_a_head() {
    let dir = tempfile::tempdir().unwrap();
    // Labels = the reference classifier's argmax: the runtime must agree on every text.
    let (_, logits) = read_tensor(&fixture("tiny-bert-cls/reference.safetensors"), "logits");
    let argmax = |i: usize| (logits[2 * i + 1] > logits[2 * i]) as usize;
    let eval = |file: &std::path::Path, model: &str, extra: &[&str]| {
        let out = zeroprune()
            .args(["eval", "--json", "--batch", "3", "--model"])
            .arg(fixture(model))
            .arg("--texts")
            .arg(file)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, err) = eval(&labelled_file(dir.path(), argmax), "tiny-bert-cls", &[]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["texts"], 4);
    assert_eq!(v["accuracy"], 1.0, "{v}");
    // The other labels: every prediction is wrong.
    let (_, stdout, _) = eval(
        &labelled_file(dir.path(), |i| 1 - argmax(i)),
        "tiny-bert-cls",
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["accuracy"], 0.0, "{v}");
    // A model without a classifier needs --head.
    let file = labelled_file(dir.path(), argmax);
    let (ok, _, err) = eval(&file, "tiny-bert", &[]);
    assert!(!ok && err.contains("--head"), "{err}");
    // A head of the wrong width names the file and the tensor.
    let head = dir.path().join("head.safetensors");
    let views = [
        ("weight", vec![2usize, 16], vec![0u8; 2 * 16 * 4]),
        ("bias", vec![2], vec![0u8; 8]),
    ];
    let views: Vec<(&str, safetensors::tensor::TensorView)> = views
        .iter()
        .map(|(n, s, d)| {
            (
                *n,
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(&head, safetensors::serialize(views, None).unwrap()).unwrap();
    let (ok, _, err) = eval(&file, "tiny-bert", &["--head", head.to_str().unwrap()]);
    assert!(
        !ok && err.contains("head.safetensors") && err.contains("weight"),
        "{err}"
    );
    // A malformed line names the file and the line.
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, "split\tlabel\tsentence\ntest\tpositive\tgood\n").unwrap();
    let (ok, _, err) = eval(&bad, "tiny-bert-cls", &[]);
    assert!(
        !ok && err.contains("bad.tsv") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn bench_on_texts_times_ragged_batches() {
    let dir = tempfile::tempdir().unwrap();
    let file = labelled_file(dir.path(), |_| 0);
    let out = zeroprune()
        .args([
            "bench", "--json", "--batch", "1,3", "--runs", "1", "--model",
        ])
        .arg(fixture("tiny-bert"))
        .arg("--texts")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // The first text alone has no padding; the first three (13, 31 and 64 tokens) do.
    assert_eq!(rows[0]["padding_share"], 0.0);
    assert_eq!(rows[1]["tokens_max"], 64);
    let share = rows[1]["padding_share"].as_f64().unwrap();
    assert!((share - (1.0 - 108.0 / 192.0)).abs() < 1e-9, "{share}");
    assert!(rows
        .iter()
        .all(|r| r["texts_per_s"].as_f64().unwrap() > 0.0));
    // More texts than the file holds is an error naming it.
    let out = zeroprune()
        .args(["bench", "--batch", "9", "--model"])
        .arg(fixture("tiny-bert"))
        .arg("--texts")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer than --batch 9"));
}
