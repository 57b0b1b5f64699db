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
pub const TARGETS: [&str; 5] = ["loader", "image", "options", "text-loader", "text-options"];

/// Run target `name` on `input`.
pub fn run(name: &str, input: &[u8]) -> Result<String> {
    match name {
        "loader" => loader(input),
        "image" => image(input),
        "options" => options(input),
        "text-loader" => text_loader(input),
        "text-options" => text_options(input),
        _ => panic!("unknown target {name}"),
    }
}

/// Parts of the inputs of the targets that take more than two (the last part is the rest).
pub fn parts_of(target: &str) -> usize {
    match target {
        "text-loader" => TEXT_LOADER_PARTS,
        "text-options" => 3,
        _ => 2,
    }
}

/// `input` as `n` parts: `n - 1` times [`split`], then the rest.
pub fn split_n(input: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = input;
    for _ in 1..n {
        let (first, r) = split(rest);
        out.push(first);
        rest = r;
    }
    out.push(rest);
    out
}

/// Join parts in the layout [`split_n`] reads.
pub fn join_n(parts: &[&[u8]]) -> Vec<u8> {
    match parts.split_last() {
        None => Vec::new(),
        Some((last, init)) => {
            let mut out = Vec::new();
            for p in init {
                out.extend((p.len() as u32).to_le_bytes());
                out.extend(*p);
            }
            out.extend(*last);
            out
        }
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

/// `[tokenizer.json][config.json][sentence_bert_config.json][head.safetensors][text]`.
const TEXT_LOADER_PARTS: usize = 5;

/// The text loader, the way the browser loads bytes: the config (with tiny-bert's weights; an
/// empty sentence_bert part is absent), the tokenizer for the config's length and vocabulary
/// (the tiny model's where the config fails), the text and two sentences encoded, and a linear
/// head for the model's width. The first error is the outcome.
fn text_loader(input: &[u8]) -> Result<String> {
    use zeroprune::model::bert::{BertWeights, TextModelFiles};
    let p = split_n(input, TEXT_LOADER_PARTS);
    let config = String::from_utf8_lossy(p[1]);
    let sentence_bert = String::from_utf8_lossy(p[2]);
    let files = TextModelFiles {
        config: Some(&config),
        sentence_bert: (!sentence_bert.is_empty()).then_some(&*sentence_bert),
        ..Default::default()
    };
    let loaded = BertWeights::from_bytes("fuzz/model.safetensors", tiny_bert(), &files, "fuzz");
    let c = match &loaded {
        Ok(w) => w.config.clone(),
        Err(_) => tiny_bert_config(),
    };
    let tokenizer = zeroprune::text::TextTokenizer::from_bytes(
        p[0],
        "fuzz/tokenizer.json",
        c.max_tokens,
        c.vocab_size,
    );
    let text = String::from_utf8_lossy(p[4]);
    let encoded = tokenizer
        .as_ref()
        .ok()
        .map(|t| t.encode(&[&text, "a dull , overlong film .", "an inspired triumph"]));
    let head =
        zeroprune::eval::head::Head::from_bytes(p[3], "fuzz/head.safetensors", c.hidden_size);
    loaded?;
    tokenizer?;
    let enc = encoded.expect("a tokenizer")?;
    let head = head?;
    Ok(format!(
        "{} layers, {} tokens at most; tokens {:?}; head of {} classes",
        c.num_layers,
        c.max_tokens,
        enc.lengths(),
        head.classes()
    ))
}

/// The text options: `[options JSON][labelled file][split]`. The options object goes through
/// the browser's parser ([`zeroprune::text::text_pruner`]) for tiny-bert, then resolves for texts of
/// every length it runs (as a session does per batch); the labelled file through the
/// `--texts` parser, its labels checked against two classes.
fn text_options(input: &[u8]) -> Result<String> {
    let p = split_n(input, 3);
    let c = tiny_bert_config();
    let data = zeroprune::eval::data::parse_labelled(
        &String::from_utf8_lossy(p[1]),
        "fuzz.tsv",
        &String::from_utf8_lossy(p[2]),
    );
    let labels = data.as_ref().ok().map(|items| {
        zeroprune::eval::data::check_labels(items, 2, Path::new("fuzz.tsv"), "a 2-class head")
    });
    let options: serde_json::Value =
        serde_json::from_slice(p[0]).map_err(|e| zeroprune::Error::Config {
            file: "options".into(),
            reason: e.to_string(),
        })?;
    let (pruner, dropped) = zeroprune::text::text_pruner(&options, &c)?;
    if !pruner.needs_calibration()? {
        for tokens in 2..=c.max_tokens {
            pruner.schedule(&c.geometry(tokens))?;
        }
    }
    let items = data?;
    labels.expect("parsed data")?;
    Ok(format!(
        "{} ({dropped:?}); {} texts",
        pruner.describe(),
        items.len()
    ))
}

/// tiny-bert's weights (read once).
fn tiny_bert() -> &'static [u8] {
    use std::sync::OnceLock;
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/tiny-bert/model.safetensors"),
        )
        .expect("the tiny-bert fixture")
    })
}

/// tiny-bert's config (loaded once).
fn tiny_bert_config() -> zeroprune::model::bert::BertConfig {
    use std::sync::OnceLock;
    static CONFIG: OnceLock<zeroprune::model::bert::BertConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
            zeroprune::model::bert::BertWeights::load(&dir)
                .expect("the tiny-bert fixture")
                .config
        })
        .clone()
}
