//! The `zeroprune` binary end to end, on a tiny fixture model and on generated images.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;

fn zeroprune() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zeroprune"));
    c.env_remove("ZEROPRUNE_MODEL");
    c
}

fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Three small PNG images and a labels file for them.
fn images(dir: &Path) -> Vec<std::path::PathBuf> {
    (0..3)
        .map(|i| {
            let img = image::RgbImage::from_fn(50, 40, |x, y| {
                image::Rgb([(x * 5 + i * 40) as u8, (y * 6) as u8, (i * 70) as u8])
            });
            let p = dir.join(format!("img{i}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect()
}

#[test]
fn info_prints_the_adapter() {
    let (ok, out, err) = run(zeroprune().args(["info", "--json"]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["adapter"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        v["limits"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn classify_json_lists_top_classes() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let model = fixture("tiny-hf-vit");
    let (ok, out, err) = run(zeroprune()
        .args(["classify", "--json", "--top", "3", "--model"])
        .arg(&model)
        .args(&imgs));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = v["images"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let top = list[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    // Class names come from the HF config's id2label.
    assert!(top[0]["name"].as_str().unwrap().starts_with("class-"));
    let p: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p[0] <= 1.0);
}

#[test]
fn eval_json_reports_accuracy_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    // Top-1 must agree with the per-image predictions the command lists.
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "img0.png\t1\nimg1.png\t2\nimg2.png\t3\n").unwrap();
    let (ok, out, err) = run(zeroprune()
        .args(["eval", "--json", "--batch", "2", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels));
    assert!(ok, "{err}");
    assert_eq!(imgs.len(), 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 3);
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let right = preds.iter().filter(|p| p["pred"] == p["label"]).count();
    assert!((v["top1"].as_f64().unwrap() - right as f64 / 3.0).abs() < 1e-9);
    assert!(v["gflops_per_image"].as_f64().unwrap() > 0.0);
    assert!(v["top5"].as_f64().unwrap() >= v["top1"].as_f64().unwrap());
}

#[test]
fn bad_arguments_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    // A labels file naming an image that is not there.
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "nope.png\t1\n").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["eval", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels));
    assert!(!ok);
    assert!(err.contains("nope.png"), "{err}");
    // A file that is not an image.
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(&txt));
    assert!(!ok);
    assert!(err.contains("notes.txt"), "{err}");
    // --top 0.
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--top", "0", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0]));
    assert!(!ok);
    assert!(err.contains("--top"), "{err}");
    // A batch beyond what the device holds names the largest that fits.
    std::fs::write(&labels, "img0.png\t1\n").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["eval", "--batch", "100000000", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels));
    assert!(!ok);
    assert!(err.contains("largest batch"), "{err}");
}

#[test]
fn without_a_model_and_offline_the_message_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let (ok, _, err) = run(zeroprune()
        .env("HF_HOME", cache.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .arg("classify")
        .arg(&imgs[0]));
    assert!(!ok);
    assert!(
        err.contains("--model") && err.contains("ZEROPRUNE_MODEL"),
        "{err}"
    );
}
