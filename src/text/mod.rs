//! Text: turning sentences into the token ids a text encoder reads ([`tokenize`]), and running
//! them ([`session`]). The encoders themselves are model families beside the ViT (`model::bert`,
//! `model::text_encoder`).

pub mod session;
pub mod tokenize;

pub use session::{TextOutput, TextSession};
pub use tokenize::{Encoded, TextTokenizer};
