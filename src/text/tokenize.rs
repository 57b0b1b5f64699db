//! Tokenisation with the `tokenizers` crate from a model's own `tokenizer.json`, the same code
//! natively and in the browser. Fixed padding is switched off (a batch pads to its longest text
//! when it is laid out, not here); texts are cut to the model's `max_tokens`, [CLS] and [SEP]
//! included, and each cut is reported so that the caller can warn.

use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};

/// A model's tokenizer, checked against its vocabulary.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Texts are cut to this many tokens.
    pub max_tokens: usize,
}

/// The token ids of a batch of texts, one list per text in input order (no padding).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    /// Whether each text was cut to `max_tokens`.
    pub truncated: Vec<bool>,
}

impl Encoded {
    /// Tokens per text, [CLS] and [SEP] included.
    pub fn lengths(&self) -> Vec<usize> {
        self.ids.iter().map(Vec::len).collect()
    }
}

impl TextTokenizer {
    /// Parse `tokenizer.json` bytes (`file` names them in errors) for a model of `vocab_size`
    /// tokens that reads at most `max_tokens`.
    pub fn from_bytes(
        json: &[u8],
        file: &str,
        max_tokens: usize,
        vocab_size: usize,
    ) -> Result<Self> {
        let bad = |reason: String| Error::config(file, reason);
        let mut inner = Tokenizer::from_bytes(json).map_err(|e| {
            bad(format!(
                "not a tokenizer.json the tokenizers library reads: {e}"
            ))
        })?;
        let size = inner.get_vocab_size(true);
        if size > vocab_size {
            return Err(bad(format!(
                "the tokenizer's vocabulary has {size} tokens, but the model's embedding matrix has \
                 {vocab_size} rows: they belong to different models"
            )));
        }
        for special in ["[CLS]", "[SEP]"] {
            if inner.token_to_id(special).is_none() {
                return Err(bad(format!(
                    "the vocabulary has no {special} token: not a BERT-family tokenizer"
                )));
            }
        }
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| bad(format!("cannot cut texts at {max_tokens} tokens: {e}")))?;
        Ok(TextTokenizer { inner, max_tokens })
    }

    /// Read a model folder's `tokenizer.json`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path, max_tokens: usize, vocab_size: usize) -> Result<Self> {
        let bytes =
            crate::limits::read_file(path, crate::limits::MAX_TEXT_FILE_BYTES, "a tokenizer.json")?;
        Self::from_bytes(&bytes, &path.display().to_string(), max_tokens, vocab_size)
    }

    /// The ids of `texts`. An empty or whitespace-only text is an error naming it (its embedding
    /// would be that of "[CLS] [SEP]", which no caller means).
    pub fn encode(&self, texts: &[&str]) -> Result<Encoded> {
        let mut out = Encoded {
            ids: Vec::with_capacity(texts.len()),
            truncated: Vec::with_capacity(texts.len()),
        };
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                return Err(Error::param(
                    "text",
                    format!("text {} is empty (or only whitespace)", i + 1),
                ));
            }
            let enc = self
                .inner
                .encode(*text, true)
                .map_err(|e| Error::param("text", format!("text {}: {e}", i + 1)))?;
            out.truncated.push(!enc.get_overflowing().is_empty());
            out.ids.push(enc.get_ids().to_vec());
        }
        Ok(out)
    }

    /// The vocabulary entry of every id (`[CLS]`, `great`, `##ly`, ...): what the kept-token
    /// views shade.
    pub fn pieces(&self, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&id| {
                self.inner
                    .id_to_token(id)
                    .unwrap_or_else(|| format!("[{id}]"))
            })
            .collect()
    }
}
