//! What an evaluation measures, and the one form every family's output takes for it: an
//! [`Answer`] per item (its classes, its embedding, its cost).

use super::head::Head;
use crate::error::{Error, Result};
use crate::model::{ImageOutput, ItemOutput};
use crate::session::{top_k, TextOutput};

/// The task an evaluation scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Classes: top-1 (and top-5) against labels, agreement with the dense model's class.
    #[default]
    Classify,
    /// Embeddings: cosine to the dense embedding, nearest-neighbour agreement with dense, and
    /// label recall@1 (the nearest other item has the same label) where labels are given.
    Embed,
}

impl std::str::FromStr for Task {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "classify" | "classification" => Ok(Task::Classify),
            "embed" | "embedding" | "retrieval" => Ok(Task::Embed),
            other => Err(Error::param(
                "task",
                format!("'{other}' is not a task: classify or embed"),
            )),
        }
    }
}

/// One item's answer, as every task reads it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// Classes, most likely first (at most five); empty without a classifier.
    pub top: Vec<usize>,
    /// The scores the classes came from (empty without a classifier).
    pub logits: Vec<f32>,
    /// The pooled embedding; empty where the model gives none.
    pub embedding: Vec<f32>,
    /// FLOPs of the item's forward pass.
    pub flops: f64,
    /// Tokens kept after each pruning step.
    pub kept: Vec<usize>,
    /// The item's tokens before pruning (texts; 0 for images, which all have the model's).
    pub tokens: usize,
}

impl Answer {
    /// The most likely class.
    pub fn pred(&self) -> Option<usize> {
        self.top.first().copied()
    }
}

/// A family output's answer, classified by `head` where given (a linear head on the embedding)
/// or by the model's own classifier.
pub trait Answers {
    fn answer(&self, head: Option<&Head>) -> Answer;
}

fn answer_of(
    logits: Vec<f32>,
    embedding: Vec<f32>,
    out: &impl ItemOutput,
    tokens: usize,
) -> Answer {
    let top = if logits.is_empty() {
        vec![]
    } else {
        top_k(&logits, 5).top.into_iter().map(|(c, _)| c).collect()
    };
    Answer {
        top,
        logits,
        embedding,
        flops: out.flops(),
        kept: out.kept().iter().map(Vec::len).collect(),
        tokens,
    }
}

impl Answers for ImageOutput {
    fn answer(&self, head: Option<&Head>) -> Answer {
        let logits = match head {
            Some(h) => h.logits(&self.embedding),
            None => self.logits.clone(),
        };
        answer_of(logits, self.embedding.clone(), self, 0)
    }
}

impl Answers for TextOutput {
    fn answer(&self, head: Option<&Head>) -> Answer {
        let logits = match head {
            Some(h) => h.logits(&self.embedding),
            None => self.logits.clone(),
        };
        answer_of(logits, self.embedding.clone(), self, self.tokens)
    }
}
