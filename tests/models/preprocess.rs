//! Image decoding, preprocessing (timm/torchvision eval transform semantics) and labels files.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use zeroprune::labels::*;
use zeroprune::model::{Interpolation, Preprocess};
use zeroprune::preprocess::*;

/// Preprocessing that keeps raw pixel values / 255 (mean 0, std 1).
fn raw(input_size: (usize, usize), crop_pct: f32, interpolation: Interpolation) -> Preprocess {
    Preprocess {
        input_size,
        crop_pct,
        interpolation,
        mean: [0.0; 3],
        std: [1.0; 3],
        resize: zeroprune::model::vit::Resize::CropPct,
        crop_offset: zeroprune::model::vit::CropOffset::Round,
    }
}

/// Pixel value (0..=255) of channel `c` at (x, y) in a CHW output of width `w`, height `h`.
fn value(out: &[f32], (h, w): (usize, usize), c: usize, x: usize, y: usize) -> u8 {
    let v = out[c * h * w + y * w + x] * 255.0;
    assert!(
        (v - v.round()).abs() < 1e-3,
        "{v} is not a whole pixel value"
    );
    v.round() as u8
}

fn encode(img: impl Into<image::DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.into()
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

fn image_reason(err: zeroprune::Error) -> String {
    match err {
        zeroprune::Error::Image { reason, .. } => reason,
        other => panic!("expected an image error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// preprocess

#[test]
fn output_is_chw_in_order() {
    // 3x2 image, input (2, 3): no resize (scale size equals the image), no crop.
    let img = RgbImage::from_fn(3, 2, |x, y| {
        let i = (y * 3 + x) as u8;
        Rgb([i, 100 + i, 200 + i])
    });
    let size = (2, 3);
    let out = preprocess(&img, &raw(size, 1.0, Interpolation::Bicubic)).unwrap();
    assert_eq!(out.len(), 3 * 2 * 3);
    for c in 0..3 {
        for y in 0..2 {
            for x in 0..3 {
                let i = (y * 3 + x) as u8;
                assert_eq!(value(&out, size, c, x, y), 100 * c as u8 + i);
            }
        }
    }
}

#[test]
fn normalises_a_constant_colour_exactly() {
    let img = RgbImage::from_pixel(300, 200, Rgb([255, 0, 128]));
    let out = preprocess(&img, &Preprocess::imagenet(224)).unwrap();
    assert_eq!(out.len(), 3 * 224 * 224);
    // (255/255 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128/255 - 0.406) / 0.225
    let expected = [2.248_908_3f32, -2.035_714_3, 0.426_492_4];
    for (c, plane) in out.chunks(224 * 224).enumerate() {
        for &v in plane {
            assert!(
                (v - expected[c]).abs() < 1e-5,
                "channel {c}: {v} != {}",
                expected[c]
            );
        }
    }
}

/// Image of `w x h` whose red channel is x and green channel y (both < 256).
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 7]))
}

/// Crop offsets from a `side x side` image (no resize) to 224: torchvision's `int(round(x / 2))`.
fn crop_offset(side: u32, crop_pct: f32) -> (u8, u8) {
    let p = raw((224, 224), crop_pct, Interpolation::Bicubic);
    let out = preprocess(&gradient(side, side), &p).unwrap();
    (
        value(&out, (224, 224), 0, 0, 0),
        value(&out, (224, 224), 1, 0, 0),
    )
}

#[test]
fn center_crop_rounds_half_to_even() {
    // crop_pct picked so that floor(224 / crop_pct) is the image size: no resize.
    assert_eq!(crop_offset(227, 0.985), (2, 2), "round(1.5) = 2"); // 224 / 0.985 = 227.4
    assert_eq!(crop_offset(226, 0.99), (1, 1), "round(1.0) = 1"); // 226.3
    assert_eq!(crop_offset(225, 0.995), (0, 0), "round(0.5) = 0"); // 225.1
    assert_eq!(crop_offset(224, 1.0), (0, 0));
    // 229 -> round(2.5) = 2
    assert_eq!(crop_offset(229, 0.978), (2, 2)); // 229.04
}

#[test]
fn whole_crop_matches_the_gradient() {
    let p = raw((224, 224), 0.985, Interpolation::Bicubic);
    let out = preprocess(&gradient(227, 227), &p).unwrap();
    for y in 0..224 {
        for x in 0..224 {
            assert_eq!(value(&out, (224, 224), 0, x, y), x as u8 + 2);
            assert_eq!(value(&out, (224, 224), 1, x, y), y as u8 + 2);
            assert_eq!(value(&out, (224, 224), 2, x, y), 7);
        }
    }
}

/// Checks a nearest-neighbour preprocess of `img` against the expected resized size and crop.
fn check_nearest(img: &RgbImage, p: &Preprocess, resized: (u32, u32), top_left: (u32, u32)) {
    let out = preprocess(img, p).unwrap();
    let (h, w) = p.input_size;
    assert_eq!(out.len(), 3 * h * w);
    let (sx, sy) = (
        img.width() as f64 / resized.0 as f64,
        img.height() as f64 / resized.1 as f64,
    );
    for y in 0..h {
        for x in 0..w {
            // Nearest source pixel of resized pixel (X, Y): floor((X + 0.5) * scale).
            let src_x = ((x as u32 + top_left.0) as f64 + 0.5) * sx;
            let src_y = ((y as u32 + top_left.1) as f64 + 0.5) * sy;
            let px = img.get_pixel(src_x as u32, src_y as u32);
            for c in 0..3 {
                assert_eq!(
                    value(&out, (h, w), c, x, y),
                    px[c],
                    "({x}, {y}) channel {c}"
                );
            }
        }
    }
}

/// A 300 x 200 image with distinct values along x (red) and y (green).
fn landscape() -> RgbImage {
    RgbImage::from_fn(300, 200, |x, y| {
        Rgb([(x * 255 / 299) as u8, (y * 255 / 199) as u8, 0])
    })
}

#[test]
fn resizes_the_shorter_side_keeping_the_aspect_ratio() {
    let p = raw((224, 224), 0.875, Interpolation::Nearest);
    // 300x200 -> shorter side 256, longer int(256 * 300 / 200) = 384; crop at (80, 16).
    check_nearest(&landscape(), &p, (384, 256), (80, 16));
    // The same, portrait.
    let portrait = image::imageops::rotate90(&landscape());
    check_nearest(&portrait, &p, (256, 384), (16, 80));
    // Truncation: 256 * 301 / 199 = 387.2 -> 387; crop left round(81.5) = 82.
    let odd = RgbImage::from_fn(301, 199, |x, y| Rgb([x as u8, y as u8, 0]));
    check_nearest(&odd, &p, (387, 256), (82, 16));
}

#[test]
fn non_square_input_resizes_like_timm_resize_keep_ratio() {
    // input (224, 320): scale sizes (256, 365); ratio min(200/256, 300/365) = 0.78125,
    // so 300x200 -> (round(384.0), round(256.0)); crop at (round(32.0), round(16.0)).
    let p = raw((224, 320), 0.875, Interpolation::Nearest);
    check_nearest(&landscape(), &p, (384, 256), (32, 16));
}

#[test]
fn an_image_already_at_scale_size_is_not_resampled() {
    // 256 x 300 with bicubic: shorter side is already 256, so pixels are copied exactly.
    let img = RgbImage::from_fn(256, 300, |x, y| {
        Rgb([x as u8, (y % 256) as u8, (x ^ y) as u8])
    });
    let p = raw((224, 224), 0.875, Interpolation::Bicubic);
    check_nearest(&img, &p, (256, 300), (16, 38));
}

#[test]
fn interpolations_give_sensible_values() {
    let img = landscape();
    for interpolation in [
        Interpolation::Nearest,
        Interpolation::Bilinear,
        Interpolation::Bicubic,
        Interpolation::Lanczos,
    ] {
        let out = preprocess(&img, &raw((224, 224), 0.875, interpolation)).unwrap();
        assert_eq!(out.len(), 3 * 224 * 224);
        assert!(
            out.iter().all(|v| (0.0..=1.0).contains(v)),
            "{interpolation:?}"
        );
        // Red follows x: increasing along the first row.
        assert!(out[0] < out[223], "{interpolation:?}");
    }
}

#[test]
fn small_images_are_padded_with_black_like_torchvision() {
    // Input (4, 6) with crop_pct 2.0 -> scale size (2, 3): the 3x2 image is kept as is,
    // then is smaller than the 6x4 crop.
    let img = RgbImage::from_pixel(3, 2, Rgb([255, 255, 255]));
    let size = (4, 6);
    let out = preprocess(&img, &raw(size, 2.0, Interpolation::Bicubic)).unwrap();
    // torchvision pads left (6-3)//2 = 1, top (4-2)//2 = 1.
    for y in 0..4 {
        for x in 0..6 {
            let inside = (1..4).contains(&x) && (1..3).contains(&y);
            assert_eq!(
                value(&out, size, 0, x, y),
                if inside { 255 } else { 0 },
                "({x}, {y})"
            );
        }
    }
}

/// A synthetic image with ramps, a quadratic pattern and a hard-edged checkerboard.
fn synthetic(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (x as u64, y as u64);
        let checker = if (x / 16 + y / 16) % 2 == 0 { 255 } else { 0 };
        Rgb([
            ((x * 7 + y * 3) % 256) as u8,
            ((x * x + 3 * y * y) / 7 % 256) as u8,
            checker,
        ])
    })
}

#[test]
fn resampling_is_bit_exact_with_pillow() {
    // Checksums (sum of the u8 values, and sum of value * (index % 97) over CHW) of timm's eval
    // transform (Pillow 13, crop_pct 0.875, 224) on `synthetic`. 300x200 resizes horizontally
    // first; 300x1000 -> 256x853 shrinks the height most, so Pillow 13 resizes vertically first.
    let expected = [
        ((300, 200), Interpolation::Nearest, 19167824, 918333712),
        ((300, 200), Interpolation::Bilinear, 19176937, 918985239),
        ((300, 200), Interpolation::Bicubic, 19177002, 918963157),
        ((300, 200), Interpolation::Lanczos, 19178698, 919050788),
        ((300, 1000), Interpolation::Nearest, 19189094, 921132430),
        ((300, 1000), Interpolation::Bilinear, 19188187, 921174540),
        ((300, 1000), Interpolation::Bicubic, 19187934, 921156590),
        ((300, 1000), Interpolation::Lanczos, 19187228, 921133854),
    ];
    for ((w, h), interpolation, sum, weighted) in expected {
        let out = preprocess(&synthetic(w, h), &raw((224, 224), 0.875, interpolation)).unwrap();
        let values: Vec<u64> = out.iter().map(|v| (v * 255.0).round() as u64).collect();
        let got_sum: u64 = values.iter().sum();
        let got_weighted: u64 = values
            .iter()
            .enumerate()
            .map(|(i, v)| v * (i as u64 % 97))
            .sum();
        assert_eq!(
            (got_sum, got_weighted),
            (sum, weighted),
            "{w}x{h} {interpolation:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// decoding

#[test]
fn decodes_png_and_jpeg() {
    let img = RgbImage::from_fn(31, 17, |x, y| Rgb([x as u8 * 8, y as u8 * 15, 99]));
    let png = decode_image(&encode(img.clone(), ImageFormat::Png), "a.png").unwrap();
    assert_eq!(png, img);

    let flat = RgbImage::from_pixel(32, 24, Rgb([200, 40, 90]));
    let jpeg = decode_image(&encode(flat, ImageFormat::Jpeg), "a.jpg").unwrap();
    assert_eq!(jpeg.dimensions(), (32, 24));
    let px = jpeg.get_pixel(10, 10);
    for (got, want) in px.0.iter().zip([200u8, 40, 90]) {
        assert!(got.abs_diff(want) <= 3, "{px:?}");
    }

    let bmp = decode_image(&encode(img.clone(), ImageFormat::Bmp), "a.bmp").unwrap();
    assert_eq!(bmp, img);
}

#[test]
fn grayscale_and_rgba_become_rgb() {
    let gray = GrayImage::from_pixel(5, 4, image::Luma([77]));
    let rgb = decode_image(&encode(gray, ImageFormat::Png), "gray.png").unwrap();
    assert_eq!(rgb.dimensions(), (5, 4));
    assert!(rgb.pixels().all(|p| p.0 == [77, 77, 77]));

    // Alpha is dropped, not composited (as PIL's convert("RGB")).
    let rgba = RgbaImage::from_pixel(5, 4, Rgba([10, 20, 30, 0]));
    let rgb = decode_image(&encode(rgba, ImageFormat::Png), "rgba.png").unwrap();
    assert!(rgb.pixels().all(|p| p.0 == [10, 20, 30]));
}

#[test]
fn rgba_buffers_match_rgb_images() {
    let img = landscape();
    let rgba: Vec<u8> = img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    let p = Preprocess::imagenet(224);
    let from_rgba = preprocess_rgba(300, 200, &rgba, &p).unwrap();
    assert_eq!(from_rgba, preprocess(&img, &p).unwrap());
}

#[test]
fn bad_rgba_buffers_are_errors() {
    let p = Preprocess::imagenet(224);
    let reason = image_reason(preprocess_rgba(0, 10, &[], &p).unwrap_err());
    assert!(reason.contains("empty"), "{reason}");
    let reason = image_reason(preprocess_rgba(2, 2, &[0; 15], &p).unwrap_err());
    assert!(
        reason.contains("15 bytes") && reason.contains("16"),
        "{reason}"
    );
}

#[test]
fn bad_bytes_are_errors_not_panics() {
    let reason = image_reason(decode_image(&[], "empty.png").unwrap_err());
    assert!(reason.contains("empty"), "{reason}");

    // Deterministic pseudo-random bytes.
    let mut x = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let err = decode_image(&noise, "noise.bin").unwrap_err();
    assert!(err.to_string().contains("noise.bin"), "{err}");
    assert!(image_reason(err).contains("not a JPEG, PNG"));

    let png = encode(landscape(), ImageFormat::Png);
    let reason = image_reason(decode_image(&png[..png.len() / 2], "cut.png").unwrap_err());
    assert!(reason.contains("Png"), "{reason}");

    let jpeg = encode(landscape(), ImageFormat::Jpeg);
    // A JPEG cut short may decode partially (as PIL with LOAD_TRUNCATED_IMAGES) or fail;
    // either way it must not panic.
    let _ = decode_image(&jpeg[..jpeg.len() / 2], "cut.jpg");
    let _ = decode_image(&jpeg[..20], "header.jpg");
}

#[test]
fn load_image_and_batch() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.png");
    std::fs::write(&good, encode(landscape(), ImageFormat::Png)).unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let missing = dir.path().join("missing.png");

    let p = Preprocess::imagenet(224);
    let batch = load_batch(&[good.clone(), good.clone()], &p).unwrap();
    assert_eq!(batch.len(), 2 * 3 * 224 * 224);
    assert_eq!(batch[..3 * 224 * 224], batch[3 * 224 * 224..]);

    let err = load_batch(&[good.clone(), bad.clone(), missing.clone()], &p).unwrap_err();
    assert!(err.to_string().contains("bad.png"), "{err}");
    let err = load_image(&missing).unwrap_err();
    assert!(matches!(err, zeroprune::Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.png"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// the PIL reference

fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn matches_pil_on_an_imagenet_image() {
    let image =
        manifest_path("../shared/data/imagenet-val-1300/images/ILSVRC2012_val_00000347.JPEG");
    let fixture = manifest_path("tests/fixtures/deit-tiny-numpy-first8.safetensors");
    for path in [&image, &fixture] {
        if !path.exists() {
            eprintln!(
                "note: skipping the PIL comparison, {} is absent",
                path.display()
            );
            return;
        }
    }
    let bytes = std::fs::read(&fixture).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let input0 = tensors.tensor("input0").unwrap();
    assert_eq!(input0.shape(), [3, 224, 224]);
    let want: Vec<f32> = input0
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();

    let got = preprocess(&load_image(&image).unwrap(), &Preprocess::imagenet(224)).unwrap();
    assert_eq!(got.len(), want.len());
    let diffs: Vec<f32> = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).collect();
    let max = diffs.iter().copied().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    // One u8 level is 1 / 255 / std ~ 0.017 after normalisation. Resizing, cropping and
    // normalising are bit-exact with PIL (see `resampling_is_bit_exact_with_pillow`); what is
    // left is JPEG decoding: the image crate (zune-jpeg) and libjpeg-turbo differ by up to ~5
    // levels on a few pixels (about 0.25 level on average).
    eprintln!("PIL vs zeroprune preprocessing: max abs diff {max:.4}, mean abs diff {mean:.5}");
    assert!(max < 0.11, "max abs diff {max} (more than ~6 levels)");
    assert!(mean < 0.01, "mean abs diff {mean} (more than ~0.5 level)");
}

// ---------------------------------------------------------------------------------------------
// labels

#[test]
fn parses_labels_with_comments_and_blanks() {
    let text = "# name\tindex\n\na.JPEG\t472\nb.JPEG\t0\r\nc.JPEG\t7\textra\n";
    let labels = parse_labels(text, "x.tsv").unwrap();
    assert_eq!(
        labels,
        [
            ("a.JPEG".into(), 472),
            ("b.JPEG".into(), 0),
            ("c.JPEG".into(), 7)
        ]
    );
}

#[test]
fn bad_label_lines_name_the_file_and_line() {
    let err = parse_labels("# h\na.JPEG\t1\nb.JPEG 2\n", "x.tsv").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("x.tsv") && msg.contains("line 3"), "{msg}");
    assert!(matches!(err, zeroprune::Error::Labels { line: 3, .. }));

    let msg = parse_labels("a.JPEG\tfish\n", "x.tsv")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 1") && msg.contains("fish"), "{msg}");
    let msg = parse_labels("a.JPEG\t-1\n", "x.tsv")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("line 1"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labels.tsv");
    std::fs::write(&file, "a\t1\n\nb\n").unwrap();
    let msg = read_labels(&file).unwrap_err().to_string();
    assert!(
        msg.contains("labels.tsv") && msg.contains("line 3"),
        "{msg}"
    );
}

#[test]
fn reads_the_shared_labels_file() {
    let path = manifest_path("../shared/data/imagenet-val-1300/labels.tsv");
    if !path.exists() {
        eprintln!("note: skipping, {} is absent", path.display());
        return;
    }
    let labels = read_labels(&path).unwrap();
    assert!(!labels.is_empty());
    assert_eq!(labels[0], ("ILSVRC2012_val_00000347.JPEG".to_string(), 472));
    assert!(labels.iter().all(|(_, i)| *i < 1000));
}

#[test]
fn imagenet_class_names_are_bundled() {
    let names = imagenet_class_names();
    assert_eq!(names.len(), 1000);
    assert_eq!(names[0], "tench");
}

#[test]
fn class_names_from_json_or_text() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let abc = ["a", "b", "c"].map(String::from).to_vec();
    let read = |p: PathBuf| read_class_names(&p).unwrap();
    assert_eq!(read(write("list.json", r#"["a", "b", "c"]"#)), abc);
    assert_eq!(
        read(write("map.json", r#"{"1": "b", "0": "a", "2": "c"}"#)),
        abc
    );
    assert_eq!(
        read(write(
            "config.json",
            r#"{"id2label": {"0": "a", "1": "b", "2": "c"}, "x": 1}"#
        )),
        abc
    );
    assert_eq!(read(write("names.txt", "a\nb\r\nc\n\n")), abc);

    let bad = |name: &str, text: &str| {
        read_class_names(&write(name, text))
            .unwrap_err()
            .to_string()
    };
    let msg = bad("gap.json", r#"{"0": "a", "2": "c"}"#);
    assert!(
        msg.contains("gap.json") && msg.contains("class id 1 is missing"),
        "{msg}"
    );
    let msg = bad("broken.json", "[\"a\",\n\"b\"");
    assert!(
        msg.contains("broken.json") && msg.contains("line 2"),
        "{msg}"
    );
    let msg = bad("blank.txt", "a\n\nc\n");
    assert!(msg.contains("line 2"), "{msg}");
    let msg = bad("numbers.json", "[1, 2]");
    assert!(msg.contains("not a string"), "{msg}");
    assert!(read_class_names(&dir.path().join("none.txt")).is_err());
}

/// Each Hugging Face processor's rules as its `preprocessor_config.json` states them (CLIP: the
/// shorter side to 40, crop 32; SigLIP: exactly 32x32, bilinear; DeiT: exactly 41x39, crop 32;
/// DINOv2: the shorter side to 37, crop 32, odd margins floored) give transformers' own
/// `pixel_values` for a non-square photo (`tests/reference/make_fixtures.py processors`): those of
/// its Pillow backend to float rounding, those of its default torchvision backend (whose
/// antialiased resize differs from Pillow's by a level on some pixels) to one level.
#[test]
fn hugging_face_processors_are_matched() {
    let dir = crate::common::fixture("processors");
    let photo = load_image(&dir.join("photo.png")).unwrap();
    let model = crate::common::fixture("tiny-hf-dinov2");
    for case in ["clip", "siglip", "deit", "dinov2"] {
        let tmp = tempfile::tempdir().unwrap();
        for f in ["model.safetensors", "config.json"] {
            std::fs::copy(model.join(f), tmp.path().join(f)).unwrap();
        }
        std::fs::copy(
            dir.join(case).join("preprocessor_config.json"),
            tmp.path().join("preprocessor_config.json"),
        )
        .unwrap();
        let w = zeroprune::ModelWeights::load(tmp.path()).unwrap();
        let got = preprocess(&photo, &w.config.preprocess).unwrap();
        let (_, want) = crate::common::read_tensor(&dir.join("reference.safetensors"), case);
        assert_eq!(got.len(), want.len(), "{case}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{case}: {:?}, max difference {worst:.1e}",
            w.config.preprocess.resize
        );
        assert!(worst < 1e-5, "{case}: differs from transformers by {worst}");
        let (_, torchvision) = crate::common::read_tensor(
            &dir.join("reference.safetensors"),
            &format!("{case}.torchvision"),
        );
        let std = w.config.preprocess.std;
        let plane = got.len() / 3;
        let levels = got
            .iter()
            .zip(&torchvision)
            .enumerate()
            .map(|(i, (g, t))| (g - t).abs() * std[i / plane] * 255.0)
            .fold(0.0f32, f32::max);
        eprintln!("{case}: the torchvision backend differs by {levels:.2} levels at most");
        assert!(
            levels < 1.01,
            "{case}: {levels} levels from the torchvision backend"
        );
    }
}
