//! A schedule as a file: what `zeroprune tune` writes, and what every command (`--schedule FILE`)
//! and the browser API (`{schedule: {...}}`) accept. It names the policy, the patch tokens kept
//! after each pruning block, the policy's options, and the model shape it was made for.
//!
//! ```json
//! {"policy": "tome-protect", "tokens": "0:189,1:182,2:176", "protect": 0.1,
//!  "depth": 12, "patches": 196, "flops_ratio": 0.649, "found_by": {"command": "zeroprune tune ..."}}
//! ```

use serde::{Deserialize, Serialize};

use super::{Keep, Pruning};
use crate::error::{Error, Result};
use crate::model::TokenGeometry;

#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    pub policy: String,
    /// Patch tokens kept after each pruning block: `BLOCK:COUNT,...` (`--tokens`).
    pub tokens: String,
    /// Blocks of the model the schedule was made for.
    pub depth: usize,
    /// Patch tokens of that model.
    pub patches: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iters: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protect: Option<f64>,
    /// The schedule's FLOPs over dense (for people reading the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops_ratio: Option<f64>,
    /// How the schedule was found (for people reading the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "unknown"))]
    pub found_by: Option<serde_json::Value>,
}

impl ScheduleFile {
    /// The file for a resolved fixed-count schedule (options the policy reads included).
    pub fn from_pruning(pruning: &Pruning, g: &TokenGeometry) -> Result<Self> {
        let tokens = pruning
            .steps
            .iter()
            .map(|s| match s.keep {
                Keep::Tokens(k) => Ok(format!("{}:{k}", s.block)),
                Keep::Threshold(_) => Err(Error::param(
                    "schedule",
                    "a schedule file holds token counts; threshold schedules have none",
                )),
            })
            .collect::<Result<Vec<_>>>()?
            .join(",");
        let reads = pruning.policy.def().options();
        let o = &pruning.options;
        let has = |opt: super::Opt| reads.contains(&opt);
        Ok(ScheduleFile {
            policy: pruning.policy.name().into(),
            tokens,
            depth: g.depth,
            patches: g.prunable,
            sim: has(super::Opt::Sim).then_some(o.sim),
            heads: has(super::Opt::Heads).then(|| {
                serde_json::to_value(o.heads)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            }),
            iters: if has(super::Opt::Iters) {
                o.iters
            } else {
                None
            },
            seed: has(super::Opt::Seed).then_some(o.seed),
            protect: has(super::Opt::Protect).then_some(o.protect),
            flops_ratio: Some(pruning.flops(g) / g.dense_flops()),
            found_by: None,
        })
    }

    /// Parse a schedule file's text; `name` (the file) is named in errors.
    pub fn parse(text: &str, name: &str) -> Result<Self> {
        crate::json::parse(text, name).map_err(|e| match e {
            Error::Config { file, reason } => Error::Config {
                file,
                reason: format!("not a schedule file: {reason}"),
            },
            other => other,
        })
    }

    /// Read a schedule file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let text = crate::limits::read_text(path, "a schedule file")?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The file as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    /// Whether the schedule was made for model `c`.
    pub fn check_model(&self, g: &TokenGeometry) -> Result<()> {
        if self.depth != g.depth || self.patches != g.prunable {
            return Err(Error::param(
                "schedule",
                format!(
                    "the schedule is for a model of {} blocks and {} patch tokens; this one has {} and {}",
                    self.depth,
                    self.patches,
                    g.depth,
                    g.prunable
                ),
            ));
        }
        Ok(())
    }
}
