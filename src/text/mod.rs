//! Text input: turning sentences into the token ids a text encoder reads. The encoders
//! themselves are a model family (`model::bert`), run by the one session (`TextSession`).

pub mod options;
pub mod tokenize;

pub use options::text_pruner;
pub use tokenize::{Encoded, TextTokenizer};
