//! Evaluation: the data an evaluation reads ([`data`]) and the heads that classify embeddings
//! ([`head`]).

pub mod data;
pub mod head;
