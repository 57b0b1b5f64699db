//! Text: turning sentences into the token ids a text encoder reads ([`tokenize`]), and running
//! them ([`session`]). The encoders themselves are model families beside the ViT (`model::bert`,
//! `model::text_encoder`).

pub mod pruning;
pub mod session;
pub mod tokenize;

pub use pruning::{read_thresholds, Dropped, TextPruning};
pub use session::{text_position, TextOutput, TextSession};
pub use tokenize::{Encoded, TextTokenizer};
