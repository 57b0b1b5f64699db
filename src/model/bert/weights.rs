//! A BERT encoder's weights on the host, in the Hugging Face layout (plain `BertModel`, or a task
//! model with the `bert.` prefix and a sequence classifier), each tensor name spelled here once.
//! Post-LayerNorm layers reuse the shared [`BlockWeights`]: the same six layers, read from BERT's
//! names (`norm1` is the LayerNorm after attention, `norm2` the one after the MLP).

use super::config::{BertConfig, TextModelFiles};
use crate::error::{Error, Result};
use crate::model::names::{BlockNames, LayerNames, QkvNames};
use crate::model::tensors::{BlockWeights, LinearWeights, NormWeights, Tensors};

/// Every tensor name of a BERT checkpoint; `prefix` is `bert.` in task models, empty in `BertModel`.
struct BertNames {
    prefix: String,
}

impl BertNames {
    fn detect(names: &[&str]) -> Self {
        let prefixed = names.iter().any(|n| n.starts_with("bert.embeddings."));
        BertNames {
            prefix: if prefixed {
                "bert.".into()
            } else {
                String::new()
            },
        }
    }

    fn n(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }

    fn layer(&self, s: &str) -> LayerNames {
        LayerNames::new(self.n(s))
    }

    fn block(&self, i: usize) -> BlockNames {
        let l = |s: &str| self.layer(&format!("encoder.layer.{i}.{s}"));
        BlockNames {
            norm1: l("attention.output.LayerNorm"),
            qkv: QkvNames::Separate([
                l("attention.self.query"),
                l("attention.self.key"),
                l("attention.self.value"),
            ]),
            proj: l("attention.output.dense"),
            norm2: l("output.LayerNorm"),
            fc1: l("intermediate.dense"),
            fc2: l("output.dense"),
        }
    }

    /// Tensors a text encoder does not read: position ids kept as a buffer, and the pooler of a
    /// model used for embeddings.
    fn not_needed(&self, name: &str, classifier: bool) -> bool {
        name.ends_with("embeddings.position_ids")
            || (!classifier && name.starts_with(&self.n("pooler.")))
    }
}

/// A sequence classifier's head: `tanh(pooler(x[CLS]))`, then the classifier.
#[derive(Debug, Clone)]
pub struct ClassifierWeights {
    pub pooler: LinearWeights,
    pub classifier: LinearWeights,
}

/// A BERT encoder on the host.
#[derive(Debug, Clone)]
pub struct BertWeights {
    pub config: BertConfig,
    /// `[vocab, D]`, `[positions, D]`, `[types, D]`.
    pub word_embeddings: Vec<f32>,
    pub position_embeddings: Vec<f32>,
    pub token_type_embeddings: Vec<f32>,
    pub embeddings_norm: NormWeights,
    /// Per layer: `norm1` follows attention, `norm2` the MLP (post-LayerNorm).
    pub layers: Vec<BlockWeights>,
    pub classifier: Option<ClassifierWeights>,
    /// Where the model was read from, for messages.
    pub source: String,
}

impl BertWeights {
    /// Parse safetensors `bytes` (named `name` in messages) with the folder's text files.
    pub fn from_bytes(name: &str, bytes: &[u8], files: &TextModelFiles, dir: &str) -> Result<Self> {
        let mut config = BertConfig::read(files, dir)?;
        let mut t = Tensors::open(name, bytes)?;
        let names = BertNames::detect(&t.st.names());
        let (v, d, m) = (
            config.vocab_size,
            config.hidden_size,
            config.intermediate_size,
        );
        let word = names.n("embeddings.word_embeddings.weight");
        // The vocabulary is the embedding matrix's rows: the config must agree.
        let shape = t.shape(&word)?;
        if shape.len() != 2 || shape[1] != d || shape[0] != v {
            return Err(Error::TensorShape {
                file: t.file.clone(),
                name: word,
                got: shape,
                expected: vec![v, d],
            });
        }
        let word_embeddings = t.get(&word, &[v, d])?;
        let position_embeddings = t.get(
            &names.n("embeddings.position_embeddings.weight"),
            &[config.max_positions, d],
        )?;
        let token_type_embeddings = t.get(
            &names.n("embeddings.token_type_embeddings.weight"),
            &[config.type_vocab_size, d],
        )?;
        let embeddings_norm = NormWeights::load(&mut t, &names.layer("embeddings.LayerNorm"), d)?;
        let layers = (0..config.num_layers)
            .map(|i| BlockWeights::load(&mut t, &names.block(i), d, m))
            .collect::<Result<Vec<_>>>()?;
        let classifier = if t.has("classifier.weight") {
            let classes = t.shape("classifier.weight")?.first().copied().unwrap_or(0);
            if classes == 0 {
                return Err(Error::UnknownLayout {
                    file: t.file.clone(),
                    reason: "tensor `classifier.weight` has no classes".into(),
                });
            }
            // A config's labels name the classifier's classes: another count means the config
            // belongs to another head (Hugging Face refuses such a checkpoint too).
            if config.labels.is_empty() {
                config.labels = (0..classes).map(|i| format!("LABEL_{i}")).collect();
            } else if config.labels.len() != classes {
                return Err(Error::config(
                    format!("{dir}/config.json"),
                    format!(
                        "id2label names {} classes, but tensor `classifier.weight` of {} has {classes}",
                        config.labels.len(),
                        t.file
                    ),
                ));
            }
            Some(ClassifierWeights {
                pooler: LinearWeights::load(&mut t, &names.layer("pooler.dense"), d, d)?,
                classifier: LinearWeights::load(
                    &mut t,
                    &LayerNames::new("classifier"),
                    classes,
                    d,
                )?,
            })
        } else {
            config.labels.clear();
            None
        };
        let unused: Vec<String> = t
            .unused()
            .into_iter()
            .filter(|s| !names.not_needed(s, classifier.is_some()))
            .collect();
        if !unused.is_empty() {
            return Err(Error::UnknownLayout {
                file: t.file.clone(),
                reason: format!(
                    "{} tensors a BERT encoder of {} layers does not use (e.g. {:?}): the architecture \
                     or the config's num_hidden_layers differs",
                    unused.len(),
                    config.num_layers,
                    &unused[..unused.len().min(4)]
                ),
            });
        }
        Ok(BertWeights {
            config,
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embeddings_norm,
            layers,
            classifier,
            source: name.to_string(),
        })
    }

    /// Load a text model folder: `model.safetensors`, `config.json`, and the sentence-transformers
    /// files where present.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(dir: &std::path::Path) -> Result<Self> {
        use crate::limits;
        let text = |rel: &str| -> Result<Option<String>> {
            let p = dir.join(rel);
            if p.exists() {
                limits::read_text(&p, "a config file").map(Some)
            } else {
                Ok(None)
            }
        };
        let config = text("config.json")?;
        let modules = text("modules.json")?;
        // The pooling module's folder, as modules.json names it.
        let pooling_dir = modules
            .as_deref()
            .and_then(|m| serde_json::from_str::<Vec<serde_json::Value>>(m).ok())
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m["type"].as_str().is_some_and(|t| t.ends_with(".Pooling")))
                    .and_then(|m| m["path"].as_str().map(str::to_string))
            });
        let pooling = match &pooling_dir {
            Some(p) => text(&format!("{p}/config.json"))?,
            None => None,
        };
        let sentence_bert = text("sentence_bert_config.json")?;
        let model = dir.join("model.safetensors");
        let bytes = limits::read_file(
            &model,
            limits::MAX_MODEL_FILE_BYTES,
            "a safetensors model file",
        )?;
        let files = TextModelFiles {
            config: config.as_deref(),
            modules: modules.as_deref(),
            pooling: pooling.as_deref(),
            sentence_bert: sentence_bert.as_deref(),
        };
        Self::from_bytes(
            &model.display().to_string(),
            &bytes,
            &files,
            &dir.display().to_string(),
        )
    }
}
