//! `zeroprune embed` and `zeroprune similarity` end to end on the tiny sentence-transformers
//! fixture: the JSON fields, input order, the cut warning, and bad text input.

use crate::common::cli::{fails, run_err, run_ok, zeroprune};
use crate::common::{fixture, read_tensor, text_sentences};

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
    let copy = crate::common::with_json("tiny-bert", "config.json", |_| {});
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
    assert_eq!(v["top1"], 1.0, "{v}");
    // The other labels: every prediction is wrong.
    let (_, stdout, _) = eval(
        &labelled_file(dir.path(), |i| 1 - argmax(i)),
        "tiny-bert-cls",
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["top1"], 0.0, "{v}");
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
    let rows = v["results"].as_array().unwrap();
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

#[test]
fn embed_and_similarity_prune_with_a_policy() {
    let model = fixture("tiny-bert-prune");
    let model = model.to_str().unwrap();
    let texts = text_sentences("tiny");
    let v = run_ok(&[
        "embed",
        "--json",
        "--model",
        model,
        "--policy",
        "zero-tprune",
        "--keep",
        "0.6@0,2",
        &texts[0],
        &texts[1],
    ]);
    // Per text: its tokens, and per step the positions kept (never [CLS] or [SEP]).
    let pieces = v["pieces"].as_array().unwrap();
    let kept = v["kept"].as_array().unwrap();
    for (t, tokens) in v["tokens"].as_array().unwrap().iter().enumerate() {
        let n = tokens.as_u64().unwrap() as usize;
        assert_eq!(pieces[t].as_array().unwrap().len(), n);
        assert_eq!(pieces[t][0], "[CLS]");
        let steps = kept[t].as_array().unwrap();
        assert_eq!(steps.len(), 2);
        let first: Vec<u64> = steps[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_u64().unwrap())
            .collect();
        assert_eq!(
            first.len(),
            (0.6f64 * (n - 2) as f64 - 1e-6).ceil() as usize
        );
        assert!(first.iter().all(|&k| k >= 1 && (k as usize) < n - 1));
        let (g, d) = (
            v["gflops_per_text"][t].as_f64().unwrap(),
            v["dense_gflops_per_text"][t].as_f64().unwrap(),
        );
        assert!(g < d, "text {t}: {g} >= {d}");
    }
    assert!(v["policy"].as_str().unwrap().contains("zero-tprune"));
    // Similarity, dense and pruned side by side.
    let v = run_ok(&[
        "similarity",
        "--json",
        "--model",
        model,
        "--policy",
        "tome",
        "--flops",
        "0.7",
        &texts[2],
        &texts[3],
    ]);
    let (dense, pruned) = (&v["dense"], &v["pruned"]);
    assert_eq!(v["cosine"], dense["cosine"]);
    assert!(pruned["cosine"].as_f64().unwrap().abs() <= 1.0);
    let sum = |s: &serde_json::Value| -> f64 {
        s["gflops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_f64().unwrap())
            .sum()
    };
    let ratio = sum(pruned) / sum(dense);
    assert!(ratio <= 0.7 + 1e-9 && ratio > 0.5, "{ratio}");
    assert_eq!(pruned["kept"].as_array().unwrap().len(), 2);
}

#[test]
fn thresholds_files_and_text_pruning_errors_name_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert-prune");
    let model = model.to_str().unwrap();
    let good = dir.path().join("ltp.json");
    std::fs::write(&good, "{\"thresholds\": [0, 1.0, 0, 0.5]}").unwrap();
    let v = run_ok(&[
        "embed",
        "--json",
        "--model",
        model,
        "--thresholds",
        good.to_str().unwrap(),
        "a great film",
    ]);
    assert_eq!(v["kept"][0].as_array().unwrap().len(), 2, "{v}");
    let bad = dir.path().join("short.json");
    std::fs::write(&bad, "[0.5, 0.5]").unwrap();
    let err = run_err(&[
        "embed",
        "--model",
        model,
        "--thresholds",
        bad.to_str().unwrap(),
        "a great film",
    ]);
    assert!(
        err.contains("short.json") && err.contains("4 layers"),
        "{err}"
    );
    std::fs::write(&bad, "[0.5, -1, 0, 0]").unwrap();
    let err = run_err(&[
        "embed",
        "--model",
        model,
        "--thresholds",
        bad.to_str().unwrap(),
        "a great film",
    ]);
    assert!(err.contains("layer 1"), "{err}");
    let err = run_err(&[
        "embed",
        "--model",
        model,
        "--policy",
        "evit",
        "--keep",
        "0.5@9",
        "a great film",
    ]);
    assert!(err.contains("block 9"), "{err}");
    let err = run_err(&[
        "embed",
        "--model",
        model,
        "--thresholds",
        good.to_str().unwrap(),
        "--keep",
        "0.5@1",
        "x",
    ]);
    assert!(
        err.contains("--keep") || err.contains("cannot be used"),
        "{err}"
    );
}

#[test]
fn eval_sweep_and_bench_on_texts_compare_pruned_with_dense() {
    let dir = tempfile::tempdir().unwrap();
    let file = labelled_file(dir.path(), |i| i % 2);
    let file = file.to_str().unwrap();
    let model = fixture("tiny-bert-cls");
    let model = model.to_str().unwrap();
    // eval: against dense on the same texts; threshold + --flops calibrates on the train split.
    let v = run_ok(&[
        "eval",
        "--json",
        "--model",
        model,
        "--texts",
        file,
        "--policy",
        "threshold",
        "--flops",
        "0.7",
    ]);
    let ratio = v["flops_ratio"].as_f64().unwrap();
    assert!(ratio <= 0.75, "{v}");
    assert!(v["agreement"].as_f64().is_some() && v["mean_cosine"].as_f64().is_some());
    // Two layers: a step after each.
    assert_eq!(
        v["predictions"][0]["tokens_kept"].as_array().unwrap().len(),
        2
    );
    let err = run_err(&[
        "eval",
        "--model",
        model,
        "--texts",
        file,
        "--policy",
        "threshold",
        "--flops",
        "0.7",
        "--calibration",
        "test",
    ]);
    assert!(err.contains("--calibration"), "{err}");
    // sweep: every policy at every target, one dense pass.
    let v = run_ok(&[
        "sweep",
        "--json",
        "--model",
        model,
        "--texts",
        file,
        "--policies",
        "evit,tome",
        "--targets",
        "0.8,0.6",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "dense + 2 policies x 2 targets");
    for r in rows {
        let target = r["target"].as_f64().unwrap();
        assert!(r["flops_ratio"].as_f64().unwrap() <= target + 0.05, "{r}");
        assert!(r["agreement"].as_f64().unwrap() <= 1.0);
    }
    // bench: dense and pruned rows of the same batches, interleaved.
    let v = run_ok(&[
        "bench", "--json", "--batch", "3", "--runs", "1", "--model", model, "--texts", file,
        "--policy", "evit", "--keep", "0.5@0,1",
    ]);
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["schedule"], "dense");
    assert_eq!(rows[1]["passes"], 3);
    assert!(rows[1]["gflops_per_text"].as_f64() < rows[0]["gflops_per_text"].as_f64());
}

/// Text runs as images do: `embed --trace` writes every step's outputs, `--precision f16` runs,
/// `bench --texts` gives the per-kernel table of a profiled run, and a flag text does not take is
/// an error.
#[test]
fn text_commands_trace_profile_and_store_f16() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("tiny-bert-prune");
    let model = model.to_str().unwrap();
    let texts = text_sentences("tiny");
    let trace = dir.path().join("trace.safetensors");
    let v = run_ok(&[
        "embed",
        "--json",
        "--model",
        model,
        "--policy",
        "evit",
        "--keep",
        "0.5@1",
        "--trace",
        trace.to_str().unwrap(),
        &texts[0],
        &texts[1],
    ]);
    assert_eq!(v["embeddings"].as_array().unwrap().len(), 2);
    let bytes = std::fs::read(&trace).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names = st.names();
    assert!(names.iter().any(|n| n.contains("layer0.qkv")), "{names:?}");
    assert!(names.iter().any(|n| n.contains("prune.topk")), "{names:?}");
    let file = labelled_file(dir.path(), |i| i % 2);
    let v = run_ok(&[
        "bench",
        "--json",
        "--batch",
        "2",
        "--runs",
        "1",
        "--model",
        model,
        "--texts",
        file.to_str().unwrap(),
        "--policy",
        "evit",
        "--keep",
        "0.5@1",
        "--precisions",
        "f32,f16",
    ]);
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "dense and evit at two precisions");
    assert!(rows
        .iter()
        .all(|r| !r["kernels"].as_array().unwrap().is_empty()));
    assert!(rows[1]["prune_overhead_share"].as_f64().unwrap() > 0.0);
    let err = run_err(&[
        "bench",
        "--model",
        model,
        "--texts",
        file.to_str().unwrap(),
        "--soak",
        "10",
    ]);
    assert!(err.contains("--soak"), "{err}");
}

#[test]
fn hostile_text_options_and_data_are_errors_naming_what_is_at_fault() {
    // Each of these ran without a word: a batch of 10^11 texts, calibration on no text ("NaN of
    // the dense FLOPs"), labels the classifier cannot predict, a text of NUL bytes.
    let dir = tempfile::tempdir().unwrap();
    let file = labelled_file(dir.path(), |_| 1);
    let cls = fixture("tiny-bert-cls");
    let os = |s: &str| std::ffi::OsString::from(s);
    let eval = |extra: &[&str]| {
        let mut args = vec![
            os("eval"),
            os("--model"),
            cls.clone().into_os_string(),
            os("--texts"),
            file.clone().into_os_string(),
        ];
        args.extend(extra.iter().map(|s| os(s)));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        fails(&refs)
    };
    for (extra, shown) in [
        (
            &["--batch", "100000000000"][..],
            &["--batch", "over the limit of 4096"][..],
        ),
        (&["--batch", "0"], &["--batch", "at least 1"]),
        (&["--limit", "0"], &["--limit", "at least 1"]),
        (
            &["--skip", "4"],
            &["--skip", "texts.tsv has 4 texts of split `test`"],
        ),
        (
            &["--split", "dev"],
            &["no line of split `dev`", "its splits: `test`, `train`"],
        ),
        (
            &[
                "--policy",
                "threshold",
                "--flops",
                "0.7",
                "--calibration-limit",
                "0",
            ],
            &["--calibration-limit", "at least 1"],
        ),
        (
            &[
                "--policy",
                "threshold",
                "--flops",
                "0.7",
                "--calibration",
                "dev",
            ],
            &["no line of split `dev`"],
        ),
    ] {
        let err = eval(extra);
        for s in shown {
            assert!(err.contains(s), "{extra:?}: {err}");
        }
    }
    // A label beyond the classifier's two classes names the file and line.
    let labels = labelled_file(dir.path(), |i| if i == 2 { 7 } else { 0 });
    let err = fails(&[
        "eval".as_ref(),
        "--model".as_ref(),
        cls.as_os_str(),
        "--texts".as_ref(),
        labels.as_os_str(),
    ]);
    assert!(
        err.contains("texts.tsv line 6") && err.contains("label 7") && err.contains("has 2"),
        "{err}"
    );
    // A sentence of NUL bytes: the tokenizer leaves nothing of it.
    let nul = dir.path().join("nul.tsv");
    std::fs::write(&nul, "test\t0\tfine\ntest\t1\t\0\0\0\n").unwrap();
    let err = fails(&[
        "eval".as_ref(),
        "--model".as_ref(),
        cls.as_os_str(),
        "--texts".as_ref(),
        nul.as_os_str(),
    ]);
    assert!(
        err.contains("nul.tsv line 2") && err.contains("gives no token"),
        "{err}"
    );
    // sweep: the same limit and labels.
    let err = fails(&[
        "sweep".as_ref(),
        "--model".as_ref(),
        cls.as_os_str(),
        "--texts".as_ref(),
        labels.as_os_str(),
        "--policies".as_ref(),
        "tome".as_ref(),
    ]);
    assert!(err.contains("label 7"), "{err}");
    let err = fails(&[
        "sweep".as_ref(),
        "--model".as_ref(),
        cls.as_os_str(),
        "--texts".as_ref(),
        file.as_os_str(),
        "--limit".as_ref(),
        "0".as_ref(),
    ]);
    assert!(
        err.contains("--limit") && err.contains("at least 1"),
        "{err}"
    );
    // embed: a huge batch, a file of more texts than the limit (read no further).
    let err = fails(&[
        "embed".as_ref(),
        "--model".as_ref(),
        cls.as_os_str(),
        "--batch".as_ref(),
        "100000000000".as_ref(),
        "a film".as_ref(),
    ]);
    assert!(err.contains("over the limit of 4096"), "{err}");
    let many = dir.path().join("many.txt");
    std::fs::write(&many, "a\n".repeat(zeroprune::limits::MAX_TEXTS + 1)).unwrap();
    let err = fails(&[
        "embed".as_ref(),
        "--model".as_ref(),
        cls.as_os_str(),
        "--file".as_ref(),
        many.as_os_str(),
    ]);
    assert!(
        err.contains("many.txt") && err.contains("more than 100000 texts"),
        "{err}"
    );
}
