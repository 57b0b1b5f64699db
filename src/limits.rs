//! What input may make zeroprune allocate, stated once. Every size that a file or an option
//! controls is checked against these limits (with checked arithmetic) before anything is allocated
//! for it, so that no input, however hostile, makes the process abort on a failed allocation or
//! grow without bound. The README's "Limits and errors" lists them. (The file readers build for
//! wasm32 too, where `std::fs` fails at run time: the browser passes bytes, not paths.)

use std::path::Path;

use crate::error::{Error, Result};

/// Bytes of an image file.
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;
/// Pixels of a decoded image (a 40-megapixel photo is 160 MB as RGBA while it decodes).
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// The side timm resizes an image's shorter side to before its center crop, `size / crop_pct`.
pub const MAX_RESIZE_SIDE: usize = 4096;
/// Pixels of an image after timm's resize and before its center crop.
pub const MAX_RESIZED_PIXELS: u64 = 16 << 20;
/// Bytes of a model's safetensors file.
pub const MAX_MODEL_FILE_BYTES: u64 = 8 << 30;
/// Bytes of a model file in the browser: a wasm32 page has 4 GiB of memory, and loading holds the
/// file's bytes and the weights converted from them at once.
pub const MAX_BROWSER_MODEL_BYTES: u64 = 1536 << 20;
/// Bytes of a safetensors file's JSON header.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;
/// Bytes of a config, labels, schedule or other text file.
pub const MAX_TEXT_FILE_BYTES: u64 = 64 << 20;
/// Weighted PageRank iterations per step (`--iters`).
pub const MAX_PAGERANK_ITERS: u32 = 1000;
/// Images or texts in one batch (`--batch`): the device's buffer limits usually allow far fewer.
pub const MAX_BATCH: usize = 4096;
/// Blocks of a ViT, layers of a BERT encoder. Every layer adds GPU objects to each compiled
/// program (a bind group per step, about nine steps a layer); past some tens of thousands a driver
/// fails without an error (lavapipe runs out of memory mappings and dies by SIGSEGV at ~10000
/// tiny blocks). The deepest published models have fewer than 100.
pub const MAX_DEPTH: usize = 1024;
/// A text encoder's positions (`max_position_embeddings`), so its longest text in tokens.
pub const MAX_TEXT_POSITIONS: usize = 8192;
/// Rows of a text encoder's embedding tables (`vocab_size`, `type_vocab_size`).
pub const MAX_VOCAB: usize = 1 << 20;
/// A text encoder's `hidden_size` and `intermediate_size`.
pub const MAX_WIDTH: usize = 1 << 16;
/// Bytes of one text the tokenizer reads per token the model takes: a text is cut to
/// `max_tokens x` this before it is tokenised, so that a 50 MB line costs what a long sentence
/// does (the tokenizer holds ~100 bytes per byte of its input). A normal text has 4 to 8 bytes a
/// token; only a text whose tokens average more than this (a 10 MB word) can come out differently
/// from tokenising it whole, and it is then reported as cut.
pub const TOKENIZER_BYTES_PER_TOKEN: usize = 256;
/// WordPiece's `max_input_chars_per_word` in a `tokenizer.json` (every BERT has 100): longer words
/// become `[UNK]`, shorter ones cost time cubic in their length.
pub const MAX_WORDPIECE_CHARS: usize = 200;
/// Texts in one call (`embed --file`, one split of a labelled file, one `encode`).
pub const MAX_TEXTS: usize = 100_000;

/// The bytes of a regular file of at most `max` bytes. Anything else (a FIFO, a device such as
/// `/dev/zero`, a directory, a file over the limit) is refused before a byte is read, naming the
/// file and what it is.
pub fn read_file(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    check_regular(path, &meta, max, what)?;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // The file may grow between the check and the read: never read more than the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_big(path, bytes.len() as u64, max, what));
    }
    Ok(bytes)
}

/// [`read_file`] of a UTF-8 text file.
pub fn read_text(path: &Path, what: &str) -> Result<String> {
    let bytes = read_file(path, MAX_TEXT_FILE_BYTES, what)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{what} is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            ),
        )
    })
}

fn check_regular(path: &Path, meta: &std::fs::Metadata, max: u64, what: &str) -> Result<()> {
    let kind = meta.file_type();
    if !kind.is_file() {
        let is = if kind.is_dir() {
            "a directory"
        } else {
            "a pipe, socket or device"
        };
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{what} must be a regular file, and this is {is}"),
            ),
        ));
    }
    if meta.len() > max {
        return Err(too_big(path, meta.len(), max, what));
    }
    Ok(())
}

fn too_big(path: &Path, len: u64, max: u64, what: &str) -> Error {
    Error::io(
        path,
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} of {len} bytes is over the limit of {max} bytes"),
        ),
    )
}

/// `a * b`, or an error naming what overflowed.
pub fn mul(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::param(what, format!("{a} x {b} does not fit in memory")))
}
