//! A pruning request bound to one model: the schedule of every token geometry it meets. An image
//! model has one geometry; a text encoder has one per text length, so a request resolves per length
//! (`--keep`, `--tokens` and `--flops` then count each text's own tokens). Per-layer thresholds may
//! come from a file, and a FLOPs target for the threshold policy is met by scaling its thresholds,
//! calibrated on data first (`Session::calibrate`).

use std::cell::RefCell;
use std::collections::HashMap;

use super::policy::KeepRule;
use super::schedule::parse_blocks;
use super::{Policy, PruneRequest, Pruning, ScheduleSpec};
use crate::error::{Error, Result};
use crate::model::TokenGeometry;

/// A request and what it resolved to, per geometry (cached).
#[derive(Clone, Debug, Default)]
pub struct Pruner {
    request: PruneRequest,
    /// Per-block thresholds of the threshold policy (`--thresholds`), before [`Self::scale`].
    thresholds: Option<Vec<f32>>,
    /// What the thresholds are multiplied by; a FLOPs target calibrates it.
    scale: Option<f32>,
    /// Resolved schedules by (protected, prunable) rows.
    resolved: RefCell<HashMap<(usize, usize), Pruning>>,
    /// The largest geometry's rows: there an unreachable FLOPs target is an error.
    largest: (usize, usize),
}

impl Pruner {
    /// No pruning.
    pub fn dense() -> Self {
        Self::default()
    }

    /// `request` with optional per-block thresholds, checked against `largest`, the largest
    /// geometry the model runs (an image model's only one; a text encoder's longest text): every
    /// limit fails here, not at the first input. A smaller geometry that cannot reach a FLOPs
    /// target (a short text, whose protected rows are a large share) runs at the nearest target it
    /// reaches, dense where it reaches none.
    pub fn new(
        request: PruneRequest,
        thresholds: Option<Vec<f32>>,
        largest: &TokenGeometry,
    ) -> Result<Self> {
        if let Some(t) = &thresholds {
            if t.len() != largest.depth {
                return Err(Error::param(
                    "thresholds",
                    format!("{} values for {} layers", t.len(), largest.depth),
                ));
            }
            let by_threshold = |name: &str| {
                Policy::named(name).is_ok_and(|p| p.def().keep_rule() == KeepRule::Threshold)
            };
            if request.policy.as_deref().is_some_and(|p| !by_threshold(p)) {
                return Err(Error::param(
                    "thresholds",
                    format!(
                        "per-layer thresholds go with {}",
                        super::schedule::threshold_policies()
                    ),
                ));
            }
            if request.threshold.is_some()
                || request.keep.is_some()
                || request.tokens.is_some()
                || request.schedule.is_some()
            {
                return Err(Error::param(
                    "thresholds",
                    "give --thresholds or another schedule, not both",
                ));
            }
        }
        let mut request = request.for_modality(largest.modality);
        if thresholds.is_some() && request.policy.is_none() {
            request.policy = Some("threshold".into());
        }
        let p = Pruner {
            request,
            thresholds,
            scale: None,
            resolved: RefCell::default(),
            largest: (largest.protected, largest.prunable),
        };
        if !p.needs_calibration()? {
            // The largest geometry must reach the target: there an unreachable one is an error.
            p.schedule(largest)?;
        }
        Ok(p)
    }

    /// A request without thresholds, checked against `g`.
    pub fn from_request(request: PruneRequest, g: &TokenGeometry) -> Result<Self> {
        Self::new(request, None, g)
    }

    pub fn request(&self) -> &PruneRequest {
        &self.request
    }

    pub fn policy(&self) -> Result<Policy> {
        self.request.policy()
    }

    pub fn is_dense(&self) -> Result<bool> {
        Ok(self.policy()?.is_none())
    }

    /// The threshold policy with a FLOPs target: its thresholds' scale must be calibrated on data
    /// before it runs.
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

    /// Multiply the thresholds (per block, or the policy's default at its blocks) by `scale`.
    pub fn set_scale(&mut self, scale: f32) {
        self.scale = Some(scale);
        self.resolved.borrow_mut().clear();
    }

    pub fn scale(&self) -> Option<f32> {
        self.scale
    }

    /// The thresholds a scaled threshold schedule runs: per block with a non-zero threshold.
    fn scaled_thresholds(&self, g: &TokenGeometry) -> Result<Vec<(f32, Vec<usize>)>> {
        let scale = self.scale.unwrap_or(1.0);
        let base: Vec<(usize, f32)> = match &self.thresholds {
            Some(t) => t.iter().copied().enumerate().collect(),
            None => {
                let blocks = match &self.request.at {
                    Some(at) => parse_blocks(at, "at")?,
                    None => self.policy()?.def().default_blocks(g.depth),
                };
                let base = self.policy()?.def().default_threshold();
                blocks.into_iter().map(|b| (b, base)).collect()
            }
        };
        Ok(base
            .into_iter()
            .filter(|(_, t)| *t > 0.0)
            .map(|(b, t)| (t * scale, vec![b]))
            .collect())
    }

    /// The schedule of geometry `g`.
    pub fn schedule(&self, g: &TokenGeometry) -> Result<Pruning> {
        let key = (g.protected, g.prunable);
        if let Some(p) = self.resolved.borrow().get(&key) {
            return Ok(p.clone());
        }
        let pruning = if self.is_dense()? {
            self.request.resolve(g)?
        } else if g.prunable == 0 {
            // A text of [CLS] and [SEP] alone: nothing to prune, it runs dense.
            Pruning::dense()
        } else if self.is_threshold()?
            && (self.thresholds.is_some() || self.request.flops.is_some())
        {
            if self.needs_calibration()? {
                return Err(Error::param(
                    "flops",
                    format!(
                        "policy {} keeps a count decided per image: it meets a FLOPs target (a \
                         mean) by calibration on data first",
                        self.policy()?
                    ),
                ));
            }
            let groups = self.scaled_thresholds(g)?;
            if groups.is_empty() {
                Pruning::dense()
            } else {
                let request = PruneRequest {
                    flops: None,
                    at: None,
                    ..self.request.clone()
                };
                request.resolve_as(g, &ScheduleSpec::Threshold(groups))?
            }
        } else {
            match (self.request.resolve(g), self.request.flops) {
                (Ok(p), _) => p,
                // Below the largest geometry, a target out of reach runs at the nearest one
                // reached; none up to 1 (a text of a token or two, which ToMe cannot halve): dense.
                (Err(_), Some(target)) if key != self.largest => self
                    .nearest_reachable(g, target)
                    .unwrap_or_else(Pruning::dense),
                (Err(e), _) => return Err(e),
            }
        };
        self.resolved.borrow_mut().insert(key, pruning.clone());
        Ok(pruning)
    }

    /// The first FLOPs target above `target`, in steps of 0.01, that the request reaches on `g`.
    fn nearest_reachable(&self, g: &TokenGeometry, target: f64) -> Option<Pruning> {
        (1..=100)
            .map(|i| (target + i as f64 * 0.01).min(1.0))
            .find_map(|f| {
                PruneRequest {
                    flops: Some(f),
                    ..self.request.clone()
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
        parts.join(", ")
    }
}

/// Per-layer thresholds of the threshold policy, as a JSON file gives them: an array with one
/// value per layer, or `{"thresholds": [...]}`. A value is in the units of `--threshold` (received
/// attention scaled so that uniform attention is 1); 0 prunes nothing at that layer.
pub fn read_thresholds(path: &std::path::Path, layers: usize) -> Result<Vec<f32>> {
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
        .find(|(_, v)| !((**v as f32).is_finite() && **v >= 0.0))
    {
        // Kernels read them as f32: 1e300 is finite here and infinite there.
        return Err(bad(format!(
            "the threshold of layer {i} is {v}; it must be finite (as f32) and >= 0"
        )));
    }
    Ok(values.into_iter().map(|v| v as f32).collect())
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
