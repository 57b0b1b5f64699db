//! Every input the fuzzer (`fuzz/run.sh`) saved as a failure, replayed: each must now give an
//! answer or an error, never a panic. The inputs live in `tests/fixtures/fuzz/TARGET/`, one file
//! each, named for what they found. The targets themselves are `fuzz/targets.rs`.

#[path = "../../fuzz/targets.rs"]
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
    // The text loader: tokenizer, config, sentence-transformers cut, head, text.
    let head = {
        let w: Vec<u8> = (0..2 * 32)
            .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
            .collect();
        let b = vec![0u8; 8];
        let views = [
            (
                "weight",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 32], &w)
                    .unwrap(),
            ),
            (
                "bias",
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &b).unwrap(),
            ),
        ];
        safetensors::serialize(views, None).unwrap()
    };
    let tokenizer = fixture("tiny-bert/tokenizer.json");
    let config = fixture("tiny-bert/config.json");
    let text = |st: &[u8], text: &[u8]| targets::join_n(&[&tokenizer, &config, st, &head, text]);
    // The harness mutates one part at a time: the parts come back as they were joined.
    let input = text(b"", b"a fine film");
    let parts = targets::split_n(&input, targets::parts_of("text-loader"));
    assert_eq!(parts[1], &config[..]);
    assert_eq!(parts[4], b"a fine film");
    let shown = targets::run("text-loader", &input).expect("valid files");
    assert!(
        shown.contains("2 layers, 64 tokens at most") && shown.contains("2 classes"),
        "{shown}"
    );
    let shown = targets::run(
        "text-loader",
        &text(br#"{"max_seq_length": 8}"#, b"a fine film"),
    )
    .expect("valid files");
    assert!(shown.contains("8 tokens at most"), "{shown}");
    assert!(targets::run("text-loader", &text(b"", b"\0\0")).is_err());
    // The text options: an options object, a labelled file, a split.
    let data = b"test\t1\tgood\ntrain\t0\tbad\n";
    let shown = targets::run(
        "text-options",
        &targets::join_n(&[br#"{"policy": "tome", "flops": 0.7}"#, data, b"test"]),
    )
    .expect("valid options");
    assert!(
        shown.starts_with("tome") && shown.ends_with("1 texts"),
        "{shown}"
    );
    assert!(targets::run(
        "text-options",
        &targets::join_n(&[br#"{"thresholds": [1]}"#, data, b"test"])
    )
    .is_err());
    // And bad ones are errors.
    assert!(targets::run("loader", &targets::join(b"{}", b"garbage")).is_err());
    assert!(targets::run("options", &targets::join(b"", br#"{"keep": "2@1"}"#)).is_err());
}
