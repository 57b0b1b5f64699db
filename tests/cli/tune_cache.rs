//! The kernel choice cached on disk: the first process measures and writes it, later ones read
//! it, `--retune` measures again, and a bad or unwritable cache never fails a command.

use std::path::Path;
use std::process::Command;

use crate::common::cli::{self, run};
use crate::common::fixture;

fn zeroprune(cache: &Path) -> Command {
    let mut c = cli::zeroprune();
    c.env_remove("ZEROPRUNE_RETUNE")
        .env("ZEROPRUNE_CACHE_DIR", cache);
    c
}

/// `info --json`'s view of the cache: (file, cached choice).
fn info(cache: &Path) -> (String, serde_json::Value) {
    let (ok, out, err) = run(zeroprune(cache).args(["info", "--json"]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["kernel_cache"].as_str().unwrap_or_default().to_string(),
        v["cached_choice"].clone(),
    )
}

fn classify(cache: &Path, image: &Path, extra: &[&str]) -> String {
    let (ok, _, err) = run(zeroprune(cache)
        .args(["classify", "--top", "1", "--model"])
        .arg(fixture("tiny-hf-vit"))
        .arg(image)
        .args(extra));
    assert!(ok, "classify failed: {err}");
    err
}

fn entries(file: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    v["entries"].as_array().unwrap().clone()
}

#[test]
fn the_first_process_measures_and_the_next_ones_read() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let image = dir.path().join("a.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .save(&image)
        .unwrap();

    let (file, choice) = info(&cache);
    assert!(file.ends_with("kernel-choices.json"), "{file}");
    assert!(choice.is_null(), "an empty cache has no choice: {choice}");

    classify(&cache, &image, &[]);
    let file = Path::new(&file);
    let written = entries(file);
    assert_eq!(written.len(), 1, "{written:?}");
    let (_, cached) = info(&cache);
    assert_eq!(
        cached, written[0]["choice"],
        "info reads what classify wrote"
    );
    assert!(written[0]["what"].as_str().unwrap().contains("driver"));

    // A choice this build cannot have measured is not believed: measured again, entry replaced.
    let mut forged = written[0].clone();
    forged["choice"]["gemm"] = serde_json::json!({"Blocked": {"tm": 3, "tn4": 0}});
    std::fs::write(file, serde_json::json!({ "entries": [forged] }).to_string()).unwrap();
    assert!(info(&cache).1.is_null(), "a forged tile is ignored");
    classify(&cache, &image, &[]);
    let remeasured = &entries(file)[0]["choice"];
    assert_ne!(remeasured["gemm"], forged["choice"]["gemm"], "{remeasured}");
    assert_eq!(&info(&cache).1, remeasured);

    // --retune measures again and keeps one entry for this adapter.
    classify(&cache, &image, &["--retune"]);
    assert_eq!(entries(file).len(), 1);

    // Another build's entries (other keys) stay beside ours.
    let mut other = written[0].clone();
    other["key"] = serde_json::json!("0000000000000000");
    let mut all = entries(file);
    all.insert(0, other);
    std::fs::write(file, serde_json::json!({ "entries": all }).to_string()).unwrap();
    classify(&cache, &image, &["--retune"]);
    let keys: Vec<_> = entries(file).iter().map(|e| e["key"].clone()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], "0000000000000000");
}

#[test]
fn a_corrupt_or_unwritable_cache_is_a_note_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("a.png");
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 90]))
        .save(&image)
        .unwrap();

    // Not JSON: the command runs, says so, and rewrites the file.
    let cache = dir.path().join("corrupt");
    std::fs::create_dir_all(&cache).unwrap();
    let file = cache.join("kernel-choices.json");
    std::fs::write(&file, b"{ not json").unwrap();
    let err = classify(&cache, &image, &[]);
    assert!(err.contains("is not valid"), "{err}");
    assert!(err.contains("kernel-choices.json"), "{err}");
    assert_eq!(entries(&file).len(), 1, "rewritten");

    // The cache folder is a regular file: measured, a note, no failure.
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, b"x").unwrap();
    let err = classify(&blocked, &image, &[]);
    assert!(
        err.contains("could not write the kernel-choice cache"),
        "{err}"
    );
}
