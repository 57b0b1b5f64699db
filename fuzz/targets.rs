//! The fuzz targets: each takes raw bytes, splits them into the inputs of one path a user controls,
//! and runs that path. A target returns the outcome (Ok or the error's message); a panic, an abort
//! or a hang is the failure the harness looks for. Shared by the harness (`fuzz/main.rs`) and the
//! regression tests (`tests/fuzz_regressions.rs`), which replay every saved failure.

use std::path::Path;

use zeroprune::model::ConfigFiles;
use zeroprune::preprocess::{decode_image, preprocess, preprocess_rgba};
use zeroprune::prune::PruneRequest;
use zeroprune::{ModelWeights, Preprocess, Result};

/// The fuzz targets by name.
pub const TARGETS: [&str; 3] = ["loader", "image", "options"];

/// Run target `name` on `input`.
pub fn run(name: &str, input: &[u8]) -> Result<String> {
    match name {
        "loader" => loader(input),
        "image" => image(input),
        "options" => options(input),
        _ => panic!("unknown target {name}"),
    }
}

/// Split `input` as `[u32 LE length][first part][rest]` (a short or bad length: all of it is rest).
pub fn split(input: &[u8]) -> (&[u8], &[u8]) {
    let Some(len) = input.get(..4) else {
        return (&[], input);
    };
    let n = u32::from_le_bytes(len.try_into().unwrap()) as usize;
    match input.get(4..4 + n) {
        Some(first) => (first, &input[4 + n..]),
        None => (&[], &input[4..]),
    }
}

/// Join two parts in the layout `split` reads.
pub fn join(first: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = (first.len() as u32).to_le_bytes().to_vec();
    out.extend(first);
    out.extend(rest);
    out
}

/// The safetensors + config loader: `[config.json][model.safetensors]`, loaded the way the
/// browser loads bytes, then the configured preprocessing checked and the model described.
fn loader(input: &[u8]) -> Result<String> {
    let (config, model) = split(input);
    let config = String::from_utf8_lossy(config);
    let files = ConfigFiles {
        config: (!config.is_empty()).then_some(&*config),
        preprocessor: None,
    };
    let w = ModelWeights::from_bytes("fuzz.safetensors", model, files)?;
    Ok(format!("{:?}", w.config))
}

/// The image path. First byte even: `[flags][file bytes]` decoded, resized and cropped with the
/// interpolation the flags pick. Odd: `[flags][u16 width][u16 height][pixels]`, the browser's
/// RGBA path (the pixels repeated to fill `width x height` when that is small).
fn image(input: &[u8]) -> Result<String> {
    let Some((&flags, rest)) = input.split_first() else {
        return Ok("empty".into());
    };
    let mut p = Preprocess::imagenet(if flags & 4 == 0 { 224 } else { 32 });
    p.interpolation = match (flags >> 3) & 3 {
        0 => zeroprune::model::Interpolation::Bicubic,
        1 => zeroprune::model::Interpolation::Bilinear,
        2 => zeroprune::model::Interpolation::Nearest,
        _ => zeroprune::model::Interpolation::Lanczos,
    };
    if flags & 1 == 0 {
        let img = decode_image(rest, "fuzz-image")?;
        let x = preprocess(&img, &p)?;
        return Ok(format!("{}x{} -> {}", img.width(), img.height(), x.len()));
    }
    if rest.len() < 4 {
        return Ok("short".into());
    }
    let w = u16::from_le_bytes([rest[0], rest[1]]) as u32;
    let h = u16::from_le_bytes([rest[2], rest[3]]) as u32;
    let pixels = &rest[4..];
    let want = w as usize * h as usize * 4;
    let rgba: Vec<u8> = if want <= 1 << 22 && !pixels.is_empty() {
        pixels.iter().copied().cycle().take(want).collect()
    } else {
        pixels.to_vec()
    };
    let x = preprocess_rgba(w, h, &rgba, &p)?;
    Ok(format!("{w}x{h} -> {}", x.len()))
}

/// The option parsers: `[labels text][pruning request JSON]`. The request is the browser's
/// `{policy, keep, flops, ..., schedule}` object, resolved against the tiny fixture model (so block
/// numbers, token counts and FLOPs targets meet a real shape); the labels text goes through the
/// `--labels` parser.
fn options(input: &[u8]) -> Result<String> {
    let (labels, request) = split(input);
    let labels = zeroprune::labels::parse_labels(&String::from_utf8_lossy(labels), "labels.tsv")?;
    let text = String::from_utf8_lossy(request);
    let request: PruneRequest =
        serde_json::from_str(&text).map_err(|e| zeroprune::Error::Config {
            file: "request".into(),
            reason: e.to_string(),
        })?;
    let pruning = request.resolve(&tiny_config().geometry())?;
    Ok(format!(
        "{} labels; {} {}",
        labels.len(),
        pruning.policy,
        pruning.describe()
    ))
}

/// The tiny fixture model's shape (loaded once).
fn tiny_config() -> zeroprune::ViTConfig {
    use std::sync::OnceLock;
    static CONFIG: OnceLock<zeroprune::ViTConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-timm");
            ModelWeights::load(&dir).expect("the tiny fixture").config
        })
        .clone()
}
