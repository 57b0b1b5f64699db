//! Tokenisation with the `tokenizers` crate from a model's own `tokenizer.json`, the same code
//! natively and in the browser. Fixed padding is switched off (a batch pads to its longest text
//! when it is laid out, not here); texts are cut to the model's `max_tokens`, [CLS] and [SEP]
//! included, and each cut is reported so that the caller can warn.
//!
//! The work is bounded by the model's length, not the text's: a long text is tokenised a prefix at
//! a time ([`TextTokenizer::encode`]), never whole.

use tokenizers::{Tokenizer, TruncationParams};

use crate::error::{Error, Result};
use crate::limits::{
    MAX_TEXTS, MAX_TEXT_POSITIONS, MAX_WORDPIECE_CHARS, TOKENIZER_BYTES_PER_TOKEN,
};

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
        if !(2..=MAX_TEXT_POSITIONS).contains(&max_tokens) {
            return Err(Error::param(
                "max_tokens",
                format!(
                    "{max_tokens} is outside 2..={MAX_TEXT_POSITIONS} ([CLS] and [SEP] included)"
                ),
            ));
        }
        check_json(json, file, vocab_size)?;
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
        // Ids index the embedding matrix: one past it would only fail on the first text that has it.
        if let Some((token, id)) = inner
            .get_vocab(true)
            .into_iter()
            .max_by_key(|(_, id)| *id)
            .filter(|(_, id)| *id as usize >= vocab_size)
        {
            return Err(bad(format!(
                "token {token:?} has id {id}, beyond the model's {vocab_size} embeddings: they belong \
                 to different models"
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

    /// The ids of `texts` (at most [`MAX_TEXTS`]). An empty or whitespace-only text is an error
    /// naming it (its embedding would be that of "[CLS] [SEP]", which no caller means), and so is
    /// a text that gives no token (only control or zero-width characters).
    pub fn encode(&self, texts: &[&str]) -> Result<Encoded> {
        self.encode_named(texts, |i| format!("text {}", i + 1))
    }

    /// [`encode`](Self::encode), with `name(i)` naming text `i` in errors (a file's line, say).
    pub fn encode_named(&self, texts: &[&str], name: impl Fn(usize) -> String) -> Result<Encoded> {
        if texts.len() > MAX_TEXTS {
            return Err(Error::param(
                "texts",
                format!(
                    "{} texts are over the limit of {MAX_TEXTS} in one call: run them in parts",
                    texts.len()
                ),
            ));
        }
        let mut out = Encoded {
            ids: Vec::with_capacity(texts.len()),
            truncated: Vec::with_capacity(texts.len()),
        };
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                return Err(Error::param(
                    "text",
                    format!("{} is empty (or only whitespace)", name(i)),
                ));
            }
            let (ids, truncated) = self
                .encode_one(text)
                .map_err(|e| Error::param("text", format!("{}: {e}", name(i))))?;
            let Some((ids, truncated)) = ids.map(|ids| (ids, truncated)) else {
                return Err(Error::param(
                    "text",
                    format!(
                        "{} gives no token: it holds only characters the tokenizer removes \
                         (control or zero-width characters)",
                        name(i)
                    ),
                ));
            };
            out.truncated.push(truncated);
            out.ids.push(ids);
        }
        Ok(out)
    }

    /// One text's ids (`None` if it has no token but [CLS] and [SEP]) and whether it was cut,
    /// tokenising at most `max_tokens x TOKENIZER_BYTES_PER_TOKEN` bytes of it. A text that fits
    /// the first window is tokenised whole, as it always was. A longer one is tokenised a prefix at
    /// a time, each ending before a whitespace character (where every BERT tokenizer splits words,
    /// so the prefix's tokens are the whole text's first tokens), twice as long each time, until
    /// one has more tokens than the model takes: then its ids and its cut are exactly the whole
    /// text's. Only a text whose tokens average more than the bytes allowed (a 10 MB word) stops at
    /// the limit, reported as cut.
    fn encode_one(&self, text: &str) -> std::result::Result<(Option<Vec<u32>>, bool), String> {
        let budget = self.max_tokens.saturating_mul(TOKENIZER_BYTES_PER_TOKEN);
        // Leading whitespace gives no token; past the budget of it, start at the first word.
        let text = if text.len() - text.trim_start().len() > budget {
            text.trim_start()
        } else {
            text
        };
        let encode = |t: &str| -> std::result::Result<(Option<Vec<u32>>, bool), String> {
            let enc = self.inner.encode(t, true).map_err(|e| e.to_string())?;
            let content = enc.get_special_tokens_mask().contains(&0);
            Ok((
                content.then(|| enc.get_ids().to_vec()),
                !enc.get_overflowing().is_empty(),
            ))
        };
        let mut window = self.max_tokens.saturating_mul(16).max(1024).min(budget);
        loop {
            if text.len() <= window {
                return encode(text);
            }
            let end = char_floor(text, window);
            let half = char_floor(text, end / 2);
            let cut = text[half..end].rfind(char::is_whitespace).map(|i| half + i);
            let at_limit = window >= budget;
            match cut {
                Some(cut) => {
                    let (ids, overflow) = encode(&text[..cut])?;
                    if overflow {
                        return Ok((ids, true));
                    }
                    // At the limit, the text is cut here: unless all that is left is whitespace.
                    if at_limit {
                        return Ok((ids, !text[cut..].trim_start().is_empty()));
                    }
                }
                // No word ends in the window's second half: only at the limit is it cut mid-word.
                None if at_limit => return Ok((encode(&text[..end])?.0, true)),
                None => {}
            }
            window = window.saturating_mul(2).min(budget);
        }
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

/// The largest char boundary of `s` at or before byte `i`.
fn char_floor(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// What the tokenizers library takes on trust in a `tokenizer.json`, checked before it is built:
/// the JSON's syntax (a syntax error inside `decoder` panics in an `expect`), WordPiece's
/// `max_input_chars_per_word` (the greedy match costs time cubic in a word's length up to it), and
/// the post-processor's special tokens (a template piece naming a token its map lacks panics at
/// the first encode; an id past the embeddings would fail at the first run). A file of another
/// shape is left to the library to explain.
fn check_json(json: &[u8], file: &str, vocab_size: usize) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Peek {
        model: Option<PeekModel>,
        post_processor: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    struct PeekModel {
        #[serde(rename = "type")]
        kind: Option<String>,
        max_input_chars_per_word: Option<serde_json::Number>,
    }
    let bad = |reason: String| Error::config(file, reason);
    if let Err(e) = serde_json::from_slice::<Valid>(json) {
        return Err(bad(format!("not JSON: {e}")));
    }
    let Ok(peek) = serde_json::from_slice::<Peek>(json) else {
        return Ok(());
    };
    if let Some(m) = peek.model {
        if let Some(n) = m.max_input_chars_per_word {
            if m.kind.as_deref().is_none_or(|k| k == "WordPiece")
                && n.as_u64().is_none_or(|n| n > MAX_WORDPIECE_CHARS as u64)
            {
                return Err(bad(format!(
                    "model.max_input_chars_per_word {n} is over the limit of \
                     {MAX_WORDPIECE_CHARS} (BERT's is 100)"
                )));
            }
        }
    }
    match peek.post_processor {
        Some(p) => check_post_processor(&p, "post_processor", vocab_size).map_err(bad),
        None => Ok(()),
    }
}

/// A post-processor's special tokens (`at` names it in the message): every template piece names
/// a token of its map, each token has as many ids as pieces, and every id is an embedding row.
fn check_post_processor(
    p: &serde_json::Value,
    at: &str,
    vocab_size: usize,
) -> std::result::Result<(), String> {
    let id_ok = |id: &serde_json::Value, what: &str| match id.as_u64() {
        Some(i) if (i as usize) < vocab_size => Ok(()),
        Some(i) => Err(format!(
            "{at}: {what} has id {i}, beyond the model's {vocab_size} embeddings"
        )),
        None => Ok(()), // not a number: the library's error
    };
    match p["type"].as_str() {
        Some("TemplateProcessing") => {
            let tokens = p["special_tokens"].as_object();
            for template in ["single", "pair"] {
                for piece in p[template].as_array().into_iter().flatten() {
                    let Some(name) = piece["SpecialToken"]["id"].as_str() else {
                        continue;
                    };
                    if !tokens.is_some_and(|t| t.contains_key(name)) {
                        return Err(format!(
                            "{at}.{template} names the special token {name:?}, which \
                             {at}.special_tokens does not define"
                        ));
                    }
                }
            }
            for (name, t) in tokens.into_iter().flatten() {
                let (ids, pieces) = (t["ids"].as_array(), t["tokens"].as_array());
                if ids.map(Vec::len) != pieces.map(Vec::len) {
                    return Err(format!(
                        "{at}.special_tokens: {name:?} has a different number of ids and tokens"
                    ));
                }
                for id in ids.into_iter().flatten() {
                    id_ok(id, &format!("special token {name:?}"))?;
                }
            }
            Ok(())
        }
        Some("BertProcessing") | Some("RobertaProcessing") => {
            for part in ["sep", "cls"] {
                id_ok(&p[part][1], &format!("`{part}`"))?;
            }
            Ok(())
        }
        Some("Sequence") => {
            for (i, q) in p["processors"].as_array().into_iter().flatten().enumerate() {
                check_post_processor(q, &format!("{at}.processors[{i}]"), vocab_size)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Any JSON value, every string decoded: unlike `IgnoredAny`, which skips strings unread, an
/// invalid escape (`"\udc00"`) is an error here too.
struct Valid;

impl<'de> serde::Deserialize<'de> for Valid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(Valid)
    }
}

impl<'de> serde::de::Visitor<'de> for Valid {
    type Value = Valid;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_unit<E>(self) -> std::result::Result<Valid, E> {
        Ok(Valid)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Valid, A::Error> {
        while seq.next_element::<Valid>()?.is_some() {}
        Ok(Valid)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Valid, A::Error> {
        while map.next_entry::<Valid, Valid>()?.is_some() {}
        Ok(Valid)
    }
}
