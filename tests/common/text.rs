//! Text models: a model folder's tokenizer and encoded batches of texts.

use std::path::Path;

use zeroprune::model::bert::BertWeights;
use zeroprune::text::{Encoded, TextTokenizer};

/// The tokenizer of the model folder `dir`, at `w`'s token limit and vocabulary.
pub fn tokenizer(dir: &Path, w: &BertWeights) -> TextTokenizer {
    TextTokenizer::load(
        &dir.join("tokenizer.json"),
        w.config.max_tokens,
        w.config.vocab_size,
    )
    .expect("the tokenizer loads")
}

/// `texts` tokenised as one batch.
pub fn encode(t: &TextTokenizer, texts: &[String]) -> Encoded {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    t.encode(&refs).unwrap()
}
