//! Text: turning sentences into the token ids a text encoder reads ([`tokenize`]). The encoders
//! themselves are model families beside the ViT (`model::bert`).

pub mod tokenize;

pub use tokenize::{Encoded, TextTokenizer};
