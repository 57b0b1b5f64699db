//! Hostile input: sizes that would make the process allocate gigabytes, files that are not files,
//! and inputs that used to give a silent wrong answer. One test per kind, each asserting the error
//! and what it names. (Bad arguments of the command line are in tests/cli/cli.rs; device faults in
//! tests/robustness/device_faults.rs.)

use crate::common::{
    assert_mentions, broken_model, f32_bytes, file_with, fixture, gpu, load_err, with_json,
};
use serde_json::json;
use zeroprune::preprocess::{decode_image, load_image, preprocess};
use zeroprune::{Error, ModelWeights, Preprocess, Session};

// ------------------------------------------------------------------------------------------------
// Images

/// CRC-32 (IEEE) of `bytes`, for hand-made PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A PNG whose header says `w x h` (RGB8) and whose pixel data is `rows` rows of grey.
fn png(w: u32, h: u32, rows: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
        out
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let raw: Vec<u8> = (0..rows)
        .flat_map(|_| std::iter::once(0).chain(std::iter::repeat_n(128, 3 * w as usize)))
        .collect();
    // A stored (uncompressed) zlib stream, in blocks of at most 65535 bytes.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push((i + 1 == blocks.len()) as u8);
        z.extend((b.len() as u16).to_le_bytes());
        z.extend((!(b.len() as u16)).to_le_bytes());
        z.extend(*b);
    }
    let adler = raw.iter().fold((1u32, 0u32), |(a, b), &x| {
        let a = (a + x as u32) % 65521;
        (a, (b + a) % 65521)
    });
    z.extend(((adler.1 << 16) | adler.0).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &z));
    out.extend(chunk(b"IEND", &[]));
    out
}

#[test]
fn an_extreme_aspect_ratio_is_refused_before_the_resize() {
    // 60000 x 1 pixels in a small file: resizing its shorter side to 256 would make 15 gigapixels.
    let img = decode_image(&png(60000, 1, 1), "wide.png").expect("a valid PNG");
    let e = preprocess(&img, &Preprocess::imagenet(224)).expect_err("refused");
    assert_mentions(&e, &["60000x1", "15360000x256", "aspect ratio"]);
    let img = decode_image(&png(1, 30000, 30000), "tall.png").expect("a valid PNG");
    let e = preprocess(&img, &Preprocess::imagenet(224)).expect_err("refused");
    assert_mentions(&e, &["1x30000", "aspect ratio"]);
}

#[test]
fn a_header_over_the_pixel_limit_is_refused_before_decoding() {
    // The header claims 50000 x 50000; the data is one row: nothing is decoded.
    let e = decode_image(&png(50000, 50000, 1), "huge.png").expect_err("refused");
    assert!(matches!(e, Error::Image { .. }), "{e:?}");
    assert_mentions(&e, &["huge.png", "50000x50000", "over the limit"]);
}

#[test]
fn a_truncated_jpeg_is_an_error_not_a_grey_picture() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/samples");
    let jpeg = std::fs::read_dir(&path)
        .expect("web/samples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        })
        .expect("a sample JPEG");
    let bytes = std::fs::read(&jpeg).unwrap();
    decode_image(&bytes, "whole.jpg").expect("the whole file decodes");
    let e = decode_image(&bytes[..bytes.len() / 2], "half.jpg").expect_err("refused");
    assert_mentions(&e, &["half.jpg", "truncated"]);
}

#[cfg(unix)]
#[test]
fn a_fifo_or_a_directory_is_not_read_as_an_image() {
    let dir = tempfile::TempDir::new().unwrap();
    let fifo = dir.path().join("pipe.jpg");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status();
    if status.is_ok_and(|s| s.success()) {
        // Reading a FIFO nobody writes to would block forever: refused up front.
        let e = load_image(&fifo).expect_err("refused");
        assert_mentions(&e, &["pipe.jpg", "regular file", "pipe"]);
    }
    let e = load_image(dir.path()).expect_err("refused");
    assert_mentions(&e, &["regular file", "directory"]);
}

#[test]
fn an_image_file_over_the_size_limit_is_refused_unread() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("big.png");
    let f = std::fs::File::create(&path).unwrap();
    // A sparse file: no disk used, no byte read.
    f.set_len(zeroprune::limits::MAX_IMAGE_FILE_BYTES + 1)
        .unwrap();
    let e = load_image(&path).expect_err("refused");
    assert_mentions(&e, &["big.png", "over the limit"]);
}

// ------------------------------------------------------------------------------------------------
// Models

#[cfg(unix)]
#[test]
fn dev_zero_is_not_read_as_a_model() {
    let e = load_err(std::path::Path::new("/dev/zero"));
    assert_mentions(&e, &["/dev/zero", "regular file"]);
}

/// The tiny model's safetensors bytes with the JSON header replaced by `edit`'s.
fn with_header(edit: impl FnOnce(&str) -> String) -> (tempfile::TempDir, std::path::PathBuf) {
    let bytes = std::fs::read(fixture("tiny-timm").join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap().to_string();
    let new = edit(&header);
    let mut out = (new.len() as u64).to_le_bytes().to_vec();
    out.extend(new.as_bytes());
    out.extend(&bytes[8 + n..]);
    file_with(&out, "model.safetensors")
}

#[test]
fn a_duplicate_tensor_name_is_an_error() {
    let (_dir, path) = with_header(|h| {
        let v: serde_json::Value = serde_json::from_str(h).unwrap();
        let bias = serde_json::to_string(&v["head.bias"]).unwrap();
        // JSON itself takes the last of two keys: the check must see both.
        let body = h.trim_end().strip_suffix('}').expect("a JSON object");
        format!("{body}, \"head.bias\": {bias}}}")
    });
    let e = load_err(&path);
    assert_mentions(&e, &["head.bias", "twice"]);
}

#[test]
fn a_shape_that_does_not_match_its_bytes_names_the_tensor() {
    let (_dir, path) = with_header(|h| {
        let mut v: serde_json::Value = serde_json::from_str(h).unwrap();
        v["head.bias"]["shape"] = json!([3]);
        serde_json::to_string(&v).unwrap()
    });
    let e = load_err(&path);
    assert_mentions(&e, &["head.bias", "shape [3]", "needs 12 bytes"]);
}

#[test]
fn a_range_past_the_data_names_the_tensor() {
    let (_dir, path) = with_header(|h| {
        let mut v: serde_json::Value = serde_json::from_str(h).unwrap();
        // The end of the data: the largest end of any tensor.
        let end = v
            .as_object()
            .unwrap()
            .values()
            .filter_map(|t| t["data_offsets"][1].as_u64())
            .max()
            .unwrap();
        let size = v["head.bias"]["data_offsets"][1].as_u64().unwrap()
            - v["head.bias"]["data_offsets"][0].as_u64().unwrap();
        v["head.bias"]["data_offsets"] = json!([end, end + size]);
        serde_json::to_string(&v).unwrap()
    });
    let e = load_err(&path);
    assert_mentions(&e, &["head.bias", "outside"]);
}

#[test]
fn a_header_longer_than_the_file_is_an_error() {
    let mut bytes = std::fs::read(fixture("tiny-timm").join("model.safetensors")).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let (_dir, path) = file_with(&bytes, "model.safetensors");
    let e = load_err(&path);
    assert_mentions(&e, &["header", "truncated"]);
}

#[test]
fn non_finite_weights_are_found_at_load() {
    for (bad, shown) in [(f32::NAN, "NaN"), (f32::INFINITY, "inf")] {
        let dir = broken_model("tiny-timm", |t| {
            let (_, shape, bytes) = t.get_mut("blocks.1.mlp.fc2.weight").unwrap();
            let n = shape.iter().product::<usize>();
            *bytes = f32_bytes((0..n).map(|i| if i == 7 { bad } else { 0.01 }));
        });
        let e = load_err(dir.path());
        assert_mentions(&e, &["blocks.1.mlp.fc2.weight", shown, "index 7"]);
    }
}

#[test]
fn a_resize_beyond_the_limit_through_crop_pct_is_a_config_error() {
    for crop_pct in [0.002, 1e-30] {
        let dir = with_json("tiny-timm", "config.json", |c| {
            c["pretrained_cfg"]["crop_pct"] = json!(crop_pct);
        });
        let e = load_err(dir.path());
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        assert_mentions(&e, &["config.json", "crop_pct", "over the limit"]);
    }
}

#[test]
fn a_layer_norm_eps_that_is_not_positive_is_an_error() {
    for eps in [0.0, -1e-6] {
        let dir = with_json("tiny-hf-vit", "config.json", |c| {
            c["layer_norm_eps"] = json!(eps);
        });
        let e = load_err(dir.path());
        assert_mentions(&e, &["config.json", "layer_norm_eps"]);
    }
}

#[test]
fn a_one_channel_model_is_refused() {
    // Weights for grey images: every image is preprocessed to RGB, so channels would be mixed.
    let dir = broken_model("tiny-timm", |t| {
        let (_, shape, bytes) = t.get_mut("patch_embed.proj.weight").unwrap();
        shape[1] = 1;
        let n = shape.iter().product::<usize>();
        *bytes = f32_bytes((0..n).map(|_| 0.01));
    });
    let dir_config = dir.path().join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dir_config).unwrap()).unwrap();
    c["model_args"]["in_chans"] = json!(1);
    std::fs::write(&dir_config, c.to_string()).unwrap();
    let e = load_err(dir.path());
    assert_mentions(&e, &["patch_embed.proj.weight", "RGB"]);
}

#[test]
fn a_model_without_classes_is_an_error_not_a_shape_riddle() {
    let dir = broken_model("tiny-timm", |t| {
        let (_, shape, bytes) = t.get_mut("head.weight").unwrap();
        shape[0] = 0;
        bytes.clear();
        let (_, shape, bytes) = t.get_mut("head.bias").unwrap();
        shape[0] = 0;
        bytes.clear();
    });
    let e = load_err(dir.path());
    assert_mentions(&e, &["head.weight", "no classes"]);
}

// ------------------------------------------------------------------------------------------------
// Outputs

#[test]
fn a_non_finite_output_is_an_error_not_nan_percent() {
    // Finite weights whose MLP overflows f32: the logits come out NaN or infinite.
    let dir = broken_model("tiny-timm", |t| {
        for name in ["blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.weight"] {
            let (_, shape, bytes) = t.get_mut(name).unwrap();
            let n = shape.iter().product::<usize>();
            *bytes = f32_bytes((0..n).map(|_| 3.0e37));
        }
    });
    let weights = ModelWeights::load(dir.path()).expect("finite weights load");
    let mut session = Session::new(gpu(), &weights).unwrap();
    let input = vec![0.5f32; session.image_len()];
    let e = session
        .run(&input, &zeroprune::prune::Pruning::dense())
        .expect_err("a NaN answer is an error");
    assert!(matches!(e, Error::NonFinite(_)), "{e:?}");
    assert_mentions(&e, &["image 0", "not finite"]);
    // The session is still usable for a model input that behaves.
    let zero = vec![0.0f32; session.image_len()];
    let _ = session.run(&zero, &zeroprune::prune::Pruning::dense());
}

#[test]
fn pagerank_iterations_are_capped() {
    let weights = ModelWeights::load(&fixture("tiny-timm")).unwrap();
    let request = zeroprune::prune::PruneRequest {
        policy: Some("wpr".into()),
        keep: Some("0.5@1".into()),
        iters: Some(1_000_000_000),
        ..Default::default()
    };
    let e = request
        .resolve(&weights.config.geometry())
        .expect_err("refused");
    assert_mentions(&e, &["iters", "1000000000", "limit"]);
}

#[test]
fn empty_schedules_are_errors_not_dense_runs() {
    let weights = ModelWeights::load(&fixture("tiny-timm")).unwrap();
    for (keep, tokens) in [(Some(""), None), (None, Some(" "))] {
        let request = zeroprune::prune::PruneRequest {
            keep: keep.map(str::to_string),
            tokens: tokens.map(str::to_string),
            ..Default::default()
        };
        let e = request
            .resolve(&weights.config.geometry())
            .expect_err("refused");
        assert_mentions(&e, &["empty"]);
    }
}

#[test]
fn config_values_of_the_wrong_type_or_sign_name_the_field() {
    for (field, value) in [
        ("num_heads", json!(-3)),
        ("img_size", json!("224")),
        ("depth", json!(2.5)),
    ] {
        let dir = with_json("tiny-timm", "config.json", |c| {
            c["model_args"][field] = value.clone();
        });
        let e = load_err(dir.path());
        assert!(matches!(e, Error::Config { .. }), "{field}: {e:?}");
        assert_mentions(&e, &["config.json", &format!("model_args.{field}")]);
    }
}

// ------------------------------------------------------------------------------------------------
// Depth

/// A consistent timm ViT of `depth` blocks of width 8 (one head, 8 MLP units, 16x16 images of
/// 8x8 patches, 10 classes): a folder with its `model.safetensors` and `config.json`.
fn deep_vit(depth: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let d = 8;
    let mut t = crate::common::Tensors::new();
    let mut put = |name: String, shape: Vec<usize>, value: f32| {
        let n = shape.iter().product::<usize>();
        let bytes = f32_bytes((0..n).map(|i| value * (1.0 + (i % 7) as f32 / 7.0)));
        t.insert(name, (safetensors::Dtype::F32, shape, bytes));
    };
    put("cls_token".into(), vec![1, 1, d], 0.02);
    put("pos_embed".into(), vec![1, 5, d], 0.02);
    put("patch_embed.proj.weight".into(), vec![d, 3, 8, 8], 0.01);
    put("patch_embed.proj.bias".into(), vec![d], 0.0);
    for i in 0..depth {
        let b = |s: &str| format!("blocks.{i}.{s}");
        put(b("norm1.weight"), vec![d], 1.0);
        put(b("norm1.bias"), vec![d], 0.0);
        put(b("attn.qkv.weight"), vec![3 * d, d], 0.02);
        put(b("attn.qkv.bias"), vec![3 * d], 0.0);
        put(b("attn.proj.weight"), vec![d, d], 0.02);
        put(b("attn.proj.bias"), vec![d], 0.0);
        put(b("norm2.weight"), vec![d], 1.0);
        put(b("norm2.bias"), vec![d], 0.0);
        put(b("mlp.fc1.weight"), vec![d, d], 0.02);
        put(b("mlp.fc1.bias"), vec![d], 0.0);
        put(b("mlp.fc2.weight"), vec![d, d], 0.02);
        put(b("mlp.fc2.bias"), vec![d], 0.0);
    }
    put("norm.weight".into(), vec![d], 1.0);
    put("norm.bias".into(), vec![d], 0.0);
    put("head.weight".into(), vec![10, d], 0.02);
    put("head.bias".into(), vec![10], 0.0);
    let (dir, path) = file_with(&crate::common::serialize(&t), "model.safetensors");
    let config = json!({
        "architecture": "vit_deep",
        "num_classes": 10,
        "global_pool": "token",
        "model_args": {"img_size": 16, "patch_size": 8, "embed_dim": d, "depth": depth,
                       "num_heads": 1, "mlp_ratio": 1.0, "qkv_bias": true},
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let _ = path;
    let folder = dir.path().to_path_buf();
    (dir, folder)
}

#[test]
fn a_model_of_absurd_depth_is_refused_before_anything_is_built() {
    // 10000 tiny blocks used to end the process by SIGSEGV on lavapipe while the program was
    // built (a bind group per step, one memory mapping each, past the kernel's 65530).
    let depth = zeroprune::limits::MAX_DEPTH + 1;
    let (_dir, path) = deep_vit(depth);
    let e = load_err(&path);
    assert_mentions(
        &e,
        &[
            "model.safetensors",
            &format!("{depth} blocks"),
            &format!("blocks.{}", depth - 1),
            "over the limit of 1024",
        ],
    );
}

#[test]
fn a_model_at_the_depth_limit_runs_and_its_programs_stay_bounded() {
    let (_dir, path) = deep_vit(zeroprune::limits::MAX_DEPTH);
    let weights = ModelWeights::load(&path).expect("a model at the depth limit loads");
    let mut session = Session::new(gpu(), &weights).unwrap();
    let input = vec![0.5f32; session.image_len()];
    // Two pruned programs and the dense one: each has over 7000 steps, so the session keeps two
    // at most (KEEP_STEPS), not all three (KEEP_PROGRAMS would allow 16).
    let pruned = |keep: &str| {
        zeroprune::prune::PruneRequest {
            policy: Some("tome".into()),
            keep: Some(keep.into()),
            ..Default::default()
        }
        .resolve(&weights.config.geometry())
        .unwrap()
    };
    let programs = [
        pruned("0.5@2"),
        zeroprune::prune::Pruning::dense(),
        pruned("0.5@4"),
    ];
    for p in &programs {
        let out = session.run(&input, p).expect("it runs");
        assert!(out.items[0].logits.iter().all(|v| v.is_finite()));
        let steps = session.steps(1, p).unwrap().len();
        assert!(steps > zeroprune::session::KEEP_STEPS / 3, "{steps} steps");
    }
    assert!(
        session.cached().0 <= 2,
        "programs kept: {}",
        session.cached().0
    );
}
