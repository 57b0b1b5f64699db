//! Pruning requests on text. The schedule machinery (`prune::schedule`) counts in a ViT's terms:
//! protected rows, prunable rows, blocks of one shape. A text of `n` tokens is 2 protected rows
//! ([CLS] and [SEP]) and `n - 2` prunable ones, so a request resolves once per text length, against
//! [`geometry`]. Thresholds may come per layer from a file (`--thresholds`), and a FLOPs target for
//! the threshold policy is met by scaling them, calibrated on texts ([`TextPruning::set_scale`],
//! `TextSession::calibrate`).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::bert::BertConfig;
use crate::model::config::Preprocess;
use crate::model::text_encoder::PROTECTED_ROWS;
use crate::model::ViTConfig;
use crate::prune::schedule::parse_blocks;
use crate::prune::{KeepRule, Policy, PruneRequest, Pruning};

/// The shape the schedule code sees for a text of `tokens` tokens: `tokens - 2` prunable rows
/// (a 1 x (tokens - 2) grid of one-pixel patches), 2 protected rows (as a distilled DeiT's CLS and
/// distillation token), the encoder's blocks, and no stem or head FLOPs (the embedding lookup and
/// the pooling are no matrix products), so its FLOPs are the text's.
pub fn geometry(c: &BertConfig, tokens: usize) -> ViTConfig {
    ViTConfig {
        image_size: (1, tokens.saturating_sub(PROTECTED_ROWS)),
        patch_size: 1,
        in_chans: 0,
        embed_dim: c.hidden_size,
        depth: c.num_layers,
        num_heads: c.num_heads,
        mlp_dim: c.intermediate_size,
        num_classes: 0,
        distilled: true,
        layer_norm_eps: c.layer_norm_eps,
        class_names: None,
        preprocess: Preprocess::imagenet(1),
    }
}

/// Per-layer thresholds of the threshold policy, as a JSON file gives them: an array with one
/// value per layer, or `{"thresholds": [...]}`. A value is in the units of `--threshold` (received
/// attention scaled so that uniform attention is 1); 0 prunes nothing at that layer.
pub fn read_thresholds(path: &Path, layers: usize) -> Result<Vec<f32>> {
    let text = crate::limits::read_text(path, "thresholds file")?;
    parse_thresholds(&text, &path.display().to_string(), layers)
}

/// [`read_thresholds`] on a file's contents; `name` names it in errors.
pub fn parse_thresholds(text: &str, name: &str, layers: usize) -> Result<Vec<f32>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum File {
        Plain(Vec<f64>),
        Object { thresholds: Vec<f64> },
    }
    let bad = |why: String| Error::param("thresholds", format!("{name}: {why}"));
    let values = match serde_json::from_str::<File>(text) {
        Ok(File::Plain(v)) | Ok(File::Object { thresholds: v }) => v,
        Err(e) => {
            return Err(bad(format!(
                "not a JSON array of numbers or {{\"thresholds\": [...]}} ({e})"
            )))
        }
    };
    if values.len() != layers {
        return Err(bad(format!(
            "has {} thresholds; the model has {layers} layers (one value per layer, 0 for none)",
            values.len()
        )));
    }
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(bad(format!(
            "the threshold of layer {i} is {v}; it must be finite and >= 0"
        )));
    }
    Ok(values.into_iter().map(|v| v as f32).collect())
}

/// What mean pooling does with a token a dropping policy removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dropped {
    /// It stays in the mean with its state at the pruning point, re-affined from its layer's LN1 to
    /// the last layer's output LayerNorm (better accuracy and agreement downstream).
    #[default]
    Restate,
    /// It leaves the mean (the embedding stays closer to the dense one by cosine).
    Omit,
}

impl std::str::FromStr for Dropped {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "restate" => Ok(Dropped::Restate),
            "omit" => Ok(Dropped::Omit),
            other => Err(Error::param(
                "dropped",
                format!("'{other}' is not restate or omit"),
            )),
        }
    }
}

/// A pruning request for text, resolved per text length (cached).
#[derive(Clone, Debug, Default)]
pub struct TextPruning {
    /// What mean pooling does with dropped tokens.
    pub dropped: Dropped,
    request: PruneRequest,
    /// Per-layer thresholds of the threshold policy (`--thresholds`), before [`Self::scale`].
    thresholds: Option<Vec<f32>>,
    /// What the thresholds are multiplied by; a FLOPs target calibrates it.
    scale: Option<f32>,
    resolved: HashMap<usize, Pruning>,
}

impl TextPruning {
    /// No pruning.
    pub fn dense() -> Self {
        Self::default()
    }

    /// `request` (its schedule file, if any, is for images and is refused) with optional per-layer
    /// thresholds; checked against the model once, at the longest length it allows.
    pub fn new(
        request: PruneRequest,
        thresholds: Option<Vec<f32>>,
        c: &BertConfig,
    ) -> Result<Self> {
        if request.schedule.is_some() {
            return Err(Error::param(
                "schedule",
                "schedule files hold image token counts; on text give --keep, --flops, --threshold or --thresholds",
            ));
        }
        if let Some(t) = &thresholds {
            if t.len() != c.num_layers {
                return Err(Error::param(
                    "thresholds",
                    format!("{} values for {} layers", t.len(), c.num_layers),
                ));
            }
            if request.policy.as_deref().is_some_and(|p| p != "threshold") {
                return Err(Error::param(
                    "thresholds",
                    "per-layer thresholds go with --policy threshold",
                ));
            }
            if request.threshold.is_some() || request.keep.is_some() || request.tokens.is_some() {
                return Err(Error::param(
                    "thresholds",
                    "give --thresholds or another schedule, not both",
                ));
            }
        }
        let mut request = request;
        if thresholds.is_some() && request.policy.is_none() {
            request.policy = Some("threshold".into());
        }
        let mut p = TextPruning {
            dropped: Dropped::default(),
            request,
            thresholds,
            scale: None,
            resolved: HashMap::new(),
        };
        if !p.needs_calibration()? {
            // Every limit checked now, not at the first text.
            p.for_tokens(c, c.max_tokens.max(PROTECTED_ROWS + 1))?;
        }
        Ok(p)
    }

    pub fn policy(&self) -> Result<Policy> {
        self.request.policy()
    }

    pub fn is_dense(&self) -> Result<bool> {
        Ok(self.policy()?.is_none())
    }

    /// The threshold policy with a FLOPs target: its thresholds' scale must be calibrated on
    /// texts before it runs.
    pub fn needs_calibration(&self) -> Result<bool> {
        Ok(self.is_threshold()? && self.request.flops.is_some() && self.scale.is_none())
    }

    fn is_threshold(&self) -> Result<bool> {
        let p = self.policy()?;
        Ok(!p.is_none() && p.def().keep_rule() == KeepRule::Threshold)
    }

    /// The FLOPs target, if one was given.
    pub fn flops_target(&self) -> Option<f64> {
        self.request.flops
    }

    /// Multiply the thresholds (per layer, or 1 at the policy's blocks) by `scale`.
    pub fn set_scale(&mut self, scale: f32) {
        self.scale = Some(scale);
        self.resolved.clear();
    }

    pub fn scale(&self) -> Option<f32> {
        self.scale
    }

    /// The request a threshold policy runs: `THETA@BLOCK` per layer with a non-zero threshold.
    fn threshold_request(&self, c: &BertConfig) -> Result<PruneRequest> {
        let scale = self.scale.unwrap_or(1.0);
        let base: Vec<(usize, f32)> = match &self.thresholds {
            Some(t) => t.iter().copied().enumerate().collect(),
            None => {
                let blocks = match &self.request.at {
                    Some(at) => parse_blocks(at, "at")?,
                    None => self.policy()?.def().default_blocks(c.num_layers),
                };
                blocks.into_iter().map(|b| (b, 1.0)).collect()
            }
        };
        let groups: Vec<String> = base
            .into_iter()
            .filter(|(_, t)| *t > 0.0)
            .map(|(b, t)| format!("{}@{b}", t * scale))
            .collect();
        Ok(PruneRequest {
            policy: Some("threshold".into()),
            threshold: (!groups.is_empty()).then(|| groups.join(";")),
            flops: None,
            at: None,
            ..self.request.clone()
        })
    }

    /// The schedule of a text of `tokens` tokens. A FLOPs target a short text cannot reach (its
    /// protected rows are a large share) runs at the lowest it can reach instead.
    pub fn for_tokens(&mut self, c: &BertConfig, tokens: usize) -> Result<Pruning> {
        if let Some(p) = self.resolved.get(&tokens) {
            return Ok(p.clone());
        }
        let g = geometry(c, tokens);
        let pruning = if self.is_dense()? {
            self.request.resolve(&g)?
        } else if self.is_threshold()?
            && (self.thresholds.is_some() || self.request.flops.is_some())
        {
            if self.needs_calibration()? {
                return Err(Error::param(
                    "flops",
                    "the threshold policy meets a FLOPs target by calibration on texts first",
                ));
            }
            let request = self.threshold_request(c)?;
            if request.threshold.is_none() {
                Pruning::dense()
            } else {
                request.resolve(&g)?
            }
        } else {
            match (self.request.resolve(&g), self.request.flops) {
                (Ok(p), _) => p,
                (Err(e), Some(target)) => {
                    Self::nearest_reachable(&self.request, &g, target).ok_or(e)?
                }
                (Err(e), None) => return Err(e),
            }
        };
        self.resolved.insert(tokens, pruning.clone());
        Ok(pruning)
    }

    /// The first FLOPs target above `target`, in steps of 0.01, that `request` reaches on `g`.
    fn nearest_reachable(request: &PruneRequest, g: &ViTConfig, target: f64) -> Option<Pruning> {
        (1..=100)
            .map(|i| (target + i as f64 * 0.01).min(1.0))
            .find_map(|f| {
                PruneRequest {
                    flops: Some(f),
                    ..request.clone()
                }
                .resolve(g)
                .ok()
            })
    }

    /// The request in a few words: `zero-tprune, flops 0.65`.
    pub fn describe(&self) -> String {
        let Ok(policy) = self.policy() else {
            return "?".into();
        };
        if policy.is_none() {
            return "dense".into();
        }
        let r = &self.request;
        let mut parts = vec![policy.name().to_string()];
        if let Some(f) = r.flops {
            parts.push(format!("flops {f}"));
        }
        if let Some(k) = &r.keep {
            parts.push(format!("keep {k}"));
        }
        if let Some(t) = &r.tokens {
            parts.push(format!("tokens {t}"));
        }
        if let Some(t) = &r.threshold {
            parts.push(format!("threshold {t}"));
        }
        if let Some(t) = &self.thresholds {
            parts.push(format!("thresholds {t:?}"));
        }
        if let Some(s) = self.scale {
            parts.push(format!("scale {s:.4}"));
        }
        if self.dropped == Dropped::Omit && !policy.def().merges() {
            parts.push("dropped omitted".into());
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_file_forms_and_errors() {
        assert_eq!(
            parse_thresholds("[0, 0.5, 1]", "t.json", 3).unwrap(),
            vec![0.0, 0.5, 1.0]
        );
        assert_eq!(
            parse_thresholds(r#"{"thresholds": [0.1, 0.2]}"#, "t.json", 2).unwrap(),
            vec![0.1, 0.2]
        );
        let e = parse_thresholds("[0.1, 0.2]", "t.json", 6)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.json") && e.contains("6 layers"), "{e}");
        let e = parse_thresholds("[0.1, -1]", "t.json", 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("layer 1"), "{e}");
        let e = parse_thresholds("{\"x\": 1}", "t.json", 2)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.json"), "{e}");
    }
}
