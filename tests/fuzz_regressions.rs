//! Every input the fuzzer (`fuzz/run.sh`) saved as a failure, replayed: each must now give an
//! answer or an error, never a panic. The inputs live in `tests/fixtures/fuzz/TARGET/`, one file
//! each, named for what they found. The targets themselves are `fuzz/targets.rs`.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn saved_fuzz_failures_give_errors_not_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut replayed = 0;
    for target in targets::TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for file in dir.filter_map(|e| e.ok()).map(|e| e.path()) {
            let input = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| targets::run(target, &input));
            assert!(outcome.is_ok(), "{} panics", file.display());
            replayed += 1;
        }
    }
    eprintln!("{replayed} saved inputs replayed");
}

#[test]
fn the_fuzz_targets_accept_valid_inputs() {
    // So that a target broken by a change (every input an error) cannot pass unnoticed.
    let fixture = |p: &str| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(p),
        )
        .unwrap()
    };
    let model = targets::join(
        &fixture("tiny-timm/config.json"),
        &fixture("tiny-timm/model.safetensors"),
    );
    let shown = targets::run("loader", &model).expect("the tiny model loads");
    assert!(shown.contains("depth: 2"), "{shown}");
    let mut png = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(30, 20, image::Rgb([9, 99, 199]))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let mut input = vec![0u8];
    input.extend(png.into_inner());
    assert_eq!(
        targets::run("image", &input).unwrap(),
        format!("30x20 -> {}", 3 * 224 * 224)
    );
    let options = targets::join(b"a.png\t3\n", br#"{"policy": "evit", "keep": "0.5@1"}"#);
    let shown = targets::run("options", &options).expect("a valid request");
    assert!(shown.starts_with("1 labels; evit"), "{shown}");
    // And bad ones are errors.
    assert!(targets::run("loader", &targets::join(b"{}", b"garbage")).is_err());
    assert!(targets::run("options", &targets::join(b"", br#"{"keep": "2@1"}"#)).is_err());
}
