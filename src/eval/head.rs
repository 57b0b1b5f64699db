//! A linear classification head on a pooled embedding: `weight [C, D]` and `bias [C]` in a
//! safetensors file (`bench/fit_text_head.py` fits one on a text encoder's embeddings).

use std::path::Path;

use crate::error::{Error, Result};

/// A linear head `[C, D]` + `[C]` from a safetensors file, checked against the model's width.
pub struct Head {
    weight: Vec<f32>,
    bias: Vec<f32>,
    classes: usize,
}

impl Head {
    pub fn load(path: &Path, d: usize) -> Result<Self> {
        let bytes = crate::limits::read_file(
            path,
            crate::limits::MAX_MODEL_FILE_BYTES,
            "a head (safetensors)",
        )?;
        let file = path.display().to_string();
        crate::model::safetensors_check::check(&file, &bytes)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
            file: file.clone(),
            reason: e.to_string(),
        })?;
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
            let v = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((t.shape().to_vec(), v))
        };
        let (ws, weight) = tensor("weight")?;
        let (bs, bias) = tensor("bias")?;
        let classes = ws.first().copied().unwrap_or(0);
        if ws.len() != 2 || ws[1] != d || classes == 0 || bs != [classes] {
            return Err(Error::TensorShape {
                file,
                name: "weight".into(),
                got: ws,
                expected: vec![bs.first().copied().unwrap_or(2), d],
            });
        }
        Ok(Head {
            weight,
            bias,
            classes,
        })
    }

    /// Every label of the data must be a class the head can predict; `what` names the labels.
    pub fn check_labels(&self, labels: impl Iterator<Item = usize>, what: &str) -> Result<()> {
        if let Some(l) = labels.into_iter().find(|&l| l >= self.classes) {
            return Err(Error::param(
                what,
                format!(
                    "the data has label {l}, but the head predicts {} classes",
                    self.classes
                ),
            ));
        }
        Ok(())
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
