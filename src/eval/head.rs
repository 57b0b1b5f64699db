//! A linear classification head on a pooled embedding: `weight [C, D]` and `bias [C]` in a
//! safetensors file (`bench/fit_text_head.py` fits one on a text encoder's embeddings).

use std::path::Path;

use crate::error::{Error, Result};

/// A linear head `[C, D]` + `[C]` from a safetensors file, checked against the model's width.
pub struct Head {
    weight: Vec<f32>,
    bias: Vec<f32>,
    classes: usize,
    /// Where it was read from, for messages.
    file: String,
}

impl Head {
    pub fn load(path: &Path, d: usize) -> Result<Self> {
        let bytes = crate::limits::read_file(
            path,
            crate::limits::MAX_MODEL_FILE_BYTES,
            "a head (safetensors)",
        )?;
        Self::from_bytes(&bytes, &path.display().to_string(), d)
    }

    /// A head from safetensors `bytes` (`file` names them in errors) for a model of width `d`:
    /// exactly the tensors `weight [C, D]` and `bias [C]` in f32, at least one class, every value
    /// finite (a NaN would make every prediction class 0 without a word).
    pub fn from_bytes(bytes: &[u8], file: &str, d: usize) -> Result<Self> {
        let file = file.to_string();
        crate::model::safetensors_check::check(&file, bytes)?;
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        if let Some(other) = st
            .names()
            .into_iter()
            .find(|n| !["weight", "bias"].contains(n))
        {
            return Err(Error::UnknownLayout {
                file,
                reason: format!(
                    "tensor `{other}` is not part of a linear head (`weight` [C, D] and `bias` [C])"
                ),
            });
        }
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let t = st.tensor(name).map_err(|_| Error::MissingTensor {
                file: file.clone(),
                name: name.into(),
            })?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(Error::TensorDtype {
                    file: file.clone(),
                    name: name.into(),
                    dtype: format!("{:?}", t.dtype()),
                });
            }
            let v: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            if let Some((i, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
                return Err(Error::Safetensors {
                    file: file.clone(),
                    reason: format!(
                        "tensor `{name}` holds {x} at index {i}: a head's values must be finite"
                    ),
                });
            }
            Ok((t.shape().to_vec(), v))
        };
        let (ws, weight) = tensor("weight")?;
        let (bs, bias) = tensor("bias")?;
        let classes = ws.first().copied().unwrap_or(0);
        if ws.len() == 2 && classes == 0 {
            return Err(Error::UnknownLayout {
                file,
                reason: format!("tensor `weight` has no classes (shape {ws:?})"),
            });
        }
        if ws.len() != 2 || ws[1] != d {
            return Err(Error::TensorShape {
                file,
                name: "weight".into(),
                got: ws,
                expected: vec![classes.max(1), d],
            });
        }
        if bs != [classes] {
            return Err(Error::TensorShape {
                file,
                name: "bias".into(),
                got: bs,
                expected: vec![classes],
            });
        }
        Ok(Head {
            weight,
            bias,
            classes,
            file,
        })
    }

    /// Classes the head predicts.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Every label of `items` (read from `data`) must be one of the head's classes.
    pub fn check_labels(&self, items: &[super::data::Labelled], data: &Path) -> Result<()> {
        super::data::check_labels(items, self.classes, data, &format!("head {}", self.file))
    }

    pub fn logits(&self, e: &[f32]) -> Vec<f32> {
        let d = e.len();
        (0..self.classes)
            .map(|c| {
                self.bias[c]
                    + self.weight[c * d..][..d]
                        .iter()
                        .zip(e)
                        .map(|(w, x)| w * x)
                        .sum::<f32>()
            })
            .collect()
    }
}

/// The labels of a text evaluation against what classifies it: `head` where given, else the
/// model's own classifier (its class count). A model without either is an error naming `--head`.
pub fn check_labels(
    head: Option<&Head>,
    model: &crate::model::bert::BertWeights,
    items: &[super::data::Labelled],
    data: &Path,
) -> Result<()> {
    match (head, &model.classifier) {
        (Some(h), _) => h.check_labels(items, data),
        (None, Some(c)) => super::data::check_labels(
            items,
            c.classifier.out(),
            data,
            &format!("the classifier of {}", model.source),
        ),
        (None, None) => Err(Error::param(
            "--head",
            format!(
                "{} has no classifier: give a linear head (bench/fit_text_head.py fits one)",
                model.source
            ),
        )),
    }
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}
