//! A BERT-family encoder's config: `config.json` in the Hugging Face layout, plus the
//! sentence-transformers files (pooling, normalisation, `max_seq_length`) when the folder is one.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How token states become one embedding per text.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the text's tokens (sentence-transformers' default).
    Mean,
    /// The [CLS] token's state.
    Cls,
}

/// The shape and text settings of a BERT encoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    /// Texts are cut to this many tokens, [CLS] and [SEP] included: sentence-transformers'
    /// `max_seq_length` where the folder has one, else the model's positions.
    pub max_tokens: usize,
    pub pooling: Pooling,
    /// L2-normalise the pooled embedding (a sentence-transformers `Normalize` module).
    pub normalize: bool,
    /// A sequence classifier's labels (`id2label`), in class order; empty without a classifier.
    pub labels: Vec<String>,
}

/// `config.json` of a BERT model, as Hugging Face writes it; unknown fields are ignored.
#[derive(Deserialize)]
struct HfBertConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_positions")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    id2label: BTreeMap<String, String>,
}

fn default_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// sentence-transformers' `modules.json` entry.
#[derive(Deserialize)]
struct Module {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

/// sentence-transformers' `1_Pooling/config.json` (the fields zeroprune reads).
#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// The text files of a text model folder, as read (`None` where absent).
#[derive(Default)]
pub struct TextModelFiles<'a> {
    /// `config.json` (required).
    pub config: Option<&'a str>,
    /// sentence-transformers: `modules.json`, the pooling module's `config.json`, `sentence_bert_config.json`.
    pub modules: Option<&'a str>,
    pub pooling: Option<&'a str>,
    pub sentence_bert: Option<&'a str>,
}

impl BertConfig {
    /// The geometry of the longest text the model takes (requests are checked against it).
    pub fn largest_geometry(&self) -> crate::model::TokenGeometry {
        self.geometry(self.max_tokens.max(super::PROTECTED_ROWS + 1))
    }

    /// What the pruning code sees of a text of `tokens` tokens: [CLS] and [SEP] protected, the
    /// other tokens prunable, the encoder's layers, and no FLOPs outside them (the embedding lookup
    /// and the pooling are no matrix products).
    pub fn geometry(&self, tokens: usize) -> crate::model::TokenGeometry {
        let protected = super::PROTECTED_ROWS;
        crate::model::TokenGeometry {
            modality: crate::model::Modality::Text,
            protected,
            prunable: tokens.saturating_sub(protected),
            depth: self.num_layers,
            width: self.hidden_size,
            heads: self.num_heads,
            mlp: self.intermediate_size,
            fixed_flops: 0.0,
        }
    }

    /// Whether a `config.json` text describes a BERT-family model (`model_type` bert, or a
    /// `Bert*` architecture).
    pub fn is_bert(config: &str) -> bool {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(config) else {
            return false;
        };
        let bert_type = v["model_type"].as_str().is_some_and(|t| t == "bert");
        let bert_arch = v["architectures"].as_array().is_some_and(|a| {
            a.iter()
                .any(|x| x.as_str().is_some_and(|s| s.starts_with("Bert")))
        });
        bert_type || bert_arch
    }

    /// The config from a folder's files; `dir` names them in errors.
    pub fn read(files: &TextModelFiles, dir: &str) -> Result<Self> {
        let file = format!("{dir}/config.json");
        let text = files
            .config
            .ok_or_else(|| Error::config(&file, "a text model needs its config.json"))?;
        let c: HfBertConfig = crate::json::parse(text, &file)?;
        if let Some(t) = c.model_type.as_deref().filter(|t| *t != "bert") {
            return Err(Error::config(
                &file,
                format!("model_type {t:?} is not a BERT-family encoder"),
            ));
        }
        let positive = [
            ("vocab_size", c.vocab_size),
            ("hidden_size", c.hidden_size),
            ("num_hidden_layers", c.num_hidden_layers),
            ("num_attention_heads", c.num_attention_heads),
            ("intermediate_size", c.intermediate_size),
            ("max_position_embeddings", c.max_position_embeddings),
            ("type_vocab_size", c.type_vocab_size),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::config(&file, format!("{field} must be at least 1")));
            }
        }
        // Stated limits, checked before anything is sized from them (the tokenizer's work, the
        // embedding tables, the activations, the program's steps).
        use crate::limits::{MAX_DEPTH, MAX_TEXT_POSITIONS, MAX_VOCAB, MAX_WIDTH};
        let limited = [
            ("vocab_size", c.vocab_size, MAX_VOCAB),
            ("type_vocab_size", c.type_vocab_size, MAX_VOCAB),
            ("hidden_size", c.hidden_size, MAX_WIDTH),
            ("intermediate_size", c.intermediate_size, MAX_WIDTH),
            ("num_hidden_layers", c.num_hidden_layers, MAX_DEPTH),
            (
                "max_position_embeddings",
                c.max_position_embeddings,
                MAX_TEXT_POSITIONS,
            ),
        ];
        for (field, v, max) in limited {
            if v > max {
                return Err(Error::config(
                    &file,
                    format!("{field} {v} is over the limit of {max}"),
                ));
            }
        }
        if c.max_position_embeddings < super::PROTECTED_ROWS {
            return Err(Error::config(
                &file,
                "max_position_embeddings must leave room for [CLS] and [SEP] (at least 2)",
            ));
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(Error::config(
                &file,
                format!(
                    "hidden_size {} is not divisible by {} attention heads",
                    c.hidden_size, c.num_attention_heads
                ),
            ));
        }
        if !(c.layer_norm_eps > 0.0 && c.layer_norm_eps < 1.0) {
            return Err(Error::config(
                &file,
                format!("layer_norm_eps {} must be in (0, 1)", c.layer_norm_eps),
            ));
        }
        if c.hidden_act != "gelu" {
            return Err(Error::config(
                &file,
                format!(
                    "hidden_act {:?}: only \"gelu\" (exact, erf) is implemented",
                    c.hidden_act
                ),
            ));
        }
        let labels = labels_of(&c.id2label, &file)?;

        // sentence-transformers: pooling and normalisation from modules.json, the cut from
        // sentence_bert_config.json. Without them: mean pooling, no normalisation.
        let mut pooling = Pooling::Mean;
        let mut normalize = false;
        if let Some(modules) = files.modules {
            let mfile = format!("{dir}/modules.json");
            let modules: Vec<Module> = crate::json::parse(modules, &mfile)?;
            normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
            if let Some(m) = modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
                let pfile = format!("{dir}/{}/config.json", m.path);
                let text = files.pooling.ok_or_else(|| {
                    Error::config(
                        &pfile,
                        "modules.json names a pooling module, but its config.json is missing",
                    )
                })?;
                let p: PoolingConfig = crate::json::parse(text, &pfile)?;
                pooling = match (p.pooling_mode_mean_tokens, p.pooling_mode_cls_token) {
                    (true, false) => Pooling::Mean,
                    (false, true) => Pooling::Cls,
                    _ => {
                        return Err(Error::config(
                            &pfile,
                            "exactly one of pooling_mode_mean_tokens and pooling_mode_cls_token must be true \
                             (max and mean-sqrt-len pooling are not implemented)",
                        ))
                    }
                };
                if p.pooling_mode_max_tokens || p.pooling_mode_mean_sqrt_len_tokens {
                    return Err(Error::config(
                        &pfile,
                        "max and mean-sqrt-len pooling are not implemented",
                    ));
                }
            }
        }
        let mut max_tokens = c.max_position_embeddings;
        if let Some(text) = files.sentence_bert {
            let sfile = format!("{dir}/sentence_bert_config.json");
            let s: SentenceBertConfig = crate::json::parse(text, &sfile)?;
            if let Some(m) = s.max_seq_length {
                if m < 2 {
                    return Err(Error::config(
                        &sfile,
                        "max_seq_length must leave room for [CLS] and [SEP] (at least 2)",
                    ));
                }
                max_tokens = m.min(c.max_position_embeddings);
            }
        }
        Ok(BertConfig {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            intermediate_size: c.intermediate_size,
            max_positions: c.max_position_embeddings,
            type_vocab_size: c.type_vocab_size,
            layer_norm_eps: c.layer_norm_eps as f32,
            max_tokens,
            pooling,
            normalize,
            labels,
        })
    }
}

/// `id2label` as a list in class order: the keys must be 0..n without a gap.
fn labels_of(id2label: &BTreeMap<String, String>, file: &str) -> Result<Vec<String>> {
    let mut labels = vec![None; id2label.len()];
    for (k, v) in id2label {
        let i: usize = k.parse().map_err(|_| {
            Error::config(file, format!("id2label: key {k:?} is not a class index"))
        })?;
        let slot = labels.get_mut(i).ok_or_else(|| {
            Error::config(
                file,
                format!(
                    "id2label: class {i} is beyond the {} labels",
                    id2label.len()
                ),
            )
        })?;
        *slot = Some(v.clone());
    }
    Ok(labels.into_iter().flatten().collect())
}
