//! What a pruning policy is: a [`PolicyDef`] (one file per policy under `policies/`, listed in
//! the registry there) owns every fact about itself: its name and help, what it reads, how much one
//! step may remove, whether it merges, its default blocks, the options it takes, and its GPU steps.
//! [`Policy`] is a cheap handle on a registered definition.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use super::options::{Opt, PruneOptions};
use super::point::{PrunePoint, Selection};
use crate::error::{Error, Result};
use crate::gpu::Step;
use crate::model::Modality;

/// What a policy's steps read at the pruning point (the model provides only what is read).
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reads {
    /// The block's attention probabilities `P[B, H, n, n]` (the model then runs the unfused
    /// attention in that block, which writes them).
    pub attention: bool,
    /// The block's keys.
    pub keys: bool,
    /// The token sizes of merged tokens.
    pub sizes: bool,
}

impl Reads {
    /// Attention, keys and sizes: the merging policies that rank by attention.
    pub const ALL: Reads = Reads {
        attention: true,
        keys: true,
        sizes: true,
    };
}

/// How a step decides how many tokens survive.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeepRule {
    /// A token count per step, known on the host: later kernels shrink.
    Count,
    /// A score threshold per step: the count differs per image (masked rows).
    Threshold,
}

/// How a FLOPs target given without `--at` (and the default schedule) spreads the removal over
/// the blocks: schedule families in order of preference, the first that reaches the target scaled
/// to the weakest removal within it. A family is a removal profile of the schedule search
/// (`search::families`: `uniform@late`, `falling`, ...) or `keep-rate@default`, the same keep rate
/// at the policy's default blocks (the published Zero-TPrune and EViT schedules). Each policy's
/// list is what the search found best for it, level by level, on calibration images
/// (docs/pruning.md, "Default schedules").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape(pub &'static [&'static str]);

impl Shape {
    /// The same keep rate at the policy's default blocks.
    pub const KEEP_RATE: Shape = Shape(&[KEEP_RATE_FAMILY]);

    /// The families joined by `, else `.
    pub fn describe(self) -> String {
        self.0.join(", else ")
    }
}

/// The family name of a constant keep rate at the policy's default blocks.
pub const KEEP_RATE_FAMILY: &str = "keep-rate@default";

impl serde::Serialize for Shape {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.describe())
    }
}

/// The most patch tokens one step may remove, and the reason when it is less than all but one.
#[derive(Clone, Copy, Debug)]
pub struct StepLimit {
    pub max_removed: usize,
    pub why: Option<&'static str>,
}

/// A pruning policy: its facts and its GPU steps.
pub trait PolicyDef: Sync + 'static {
    /// The `--policy` value.
    fn name(&self) -> &'static str;

    /// One line for `--help`, the page and the docs.
    fn help(&self) -> &'static str;

    /// What its steps read.
    fn reads(&self) -> Reads {
        Reads::default()
    }

    /// Whether removed tokens are merged into kept ones: tokens then carry sizes, and every later
    /// block adds `log(size)` to its attention logits (proportional attention).
    fn merges(&self) -> bool {
        false
    }

    fn keep_rule(&self) -> KeepRule {
        KeepRule::Count
    }

    /// How many of `tokens_in` patch tokens one step may remove (at least one always stays).
    fn step_limit(&self, tokens_in: usize, _options: &PruneOptions) -> StepLimit {
        StepLimit {
            max_removed: tokens_in.saturating_sub(1),
            why: None,
        }
    }

    /// The blocks of its constant keep rate (`keep-rate@default` in its default shape, and the
    /// schedule search's starting point of that name).
    fn default_blocks(&self, depth: usize) -> Vec<usize> {
        every_other_block(depth)
    }

    /// The threshold of a [`KeepRule::Threshold`] policy's default schedule, and what a FLOPs
    /// target's calibrated scale multiplies.
    fn default_threshold(&self) -> f32 {
        super::schedule::DEFAULT_THRESHOLD
    }

    /// How `--flops F` without `--at`, and the default schedule, spread the removal.
    fn default_shape(&self) -> Shape {
        Shape::KEEP_RATE
    }

    /// The options it reads (any other given option is an error).
    fn options(&self) -> &'static [Opt] {
        &[]
    }

    /// The GPU steps of one pruning step at `at`, appended to `steps`: they score and select, and
    /// return which rows survive (and, for merging policies, where the others go). Shared code
    /// then compacts, gathers or merges.
    fn plan(&self, at: &PrunePoint, steps: &mut Vec<Step>) -> Result<Selection>;
}

/// Every other block from block 2 to the second-to-last (2, 4, 6, 8, 10 for 12 blocks), which
/// measured better for Zero-TPrune than EViT's 3, 6, 9 or every block (docs/pruning.md); every
/// block for shallow models.
pub fn every_other_block(depth: usize) -> Vec<usize> {
    if depth < 6 {
        return (0..depth).collect();
    }
    (2..depth - 1).step_by(2).collect()
}

/// A registered policy. Compared, hashed and printed by name.
#[derive(Clone, Copy)]
pub struct Policy(pub &'static dyn PolicyDef);

impl Policy {
    /// Every policy, `none` first: the CLI's `--policy` values, `sweep`'s defaults, the page's list.
    pub fn all() -> &'static [Policy] {
        super::policies::ALL
    }

    /// The dense model.
    pub fn none() -> Policy {
        Policy::all()[0]
    }

    /// The policy a schedule given without one runs, measured per modality. For a FLOPs target on
    /// images: the one recommended at the nearest measured level (80%, 65% and 50% of dense:
    /// tome-protect, zero-tprune-merge, zero-tprune-merge); for other schedules: zero-tprune-merge,
    /// among the best at every level. For texts: `RECOMMENDED_TEXT`
    /// (docs/pruning.md, "Recommended").
    pub fn recommended(flops: Option<f64>, modality: Modality) -> Policy {
        let any = match modality {
            Modality::Image => super::policies::RECOMMENDED_ANY,
            Modality::Text => super::policies::RECOMMENDED_ANY_TEXT,
        };
        let Some(f) = flops else {
            return any;
        };
        Policy::recommended_levels(modality)
            .iter()
            .min_by(|a, b| (a.0 - f).abs().total_cmp(&(b.0 - f).abs()))
            .map_or(any, |&(_, p)| p)
    }

    /// The recommended policy per measured FLOPs level for images or texts, highest level first.
    pub fn recommended_levels(modality: Modality) -> &'static [(f64, Policy)] {
        match modality {
            Modality::Image => super::policies::RECOMMENDED,
            Modality::Text => super::policies::RECOMMENDED_TEXT,
        }
    }

    pub fn is_none(self) -> bool {
        self == Policy::none()
    }

    /// The policy called `name` (case, `-` and `_` do not matter).
    pub fn named(name: &str) -> Result<Policy> {
        let key = |s: &str| s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        let wanted = key(name);
        Policy::all()
            .iter()
            .copied()
            .find(|p| key(p.name()) == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Policy::all().iter().map(|p| p.name()).collect();
                Error::param(
                    "policy",
                    format!(
                        "unknown policy '{}'; expected one of {}",
                        name.trim(),
                        names.join(", ")
                    ),
                )
            })
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }

    pub fn def(self) -> &'static dyn PolicyDef {
        self.0
    }
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Policy {}

impl Hash for Policy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Policy::named(s)
    }
}

impl serde::Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A policy's facts as plain data: what `--help`, the page's policy list and the docs show.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyInfo {
    pub name: &'static str,
    pub help: &'static str,
    pub reads: Reads,
    pub merges: bool,
    pub keep_rule: KeepRule,
    /// A threshold policy's default threshold (`--threshold`'s units), which a FLOPs target
    /// scales.
    pub default_threshold: Option<f32>,
    /// The blocks of its constant keep rate, for the given depth.
    pub default_blocks: Vec<usize>,
    /// How `flops` without `at` spreads the removal: families in order of preference.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string"))]
    pub default_shape: Shape,
    pub options: Vec<&'static str>,
}

impl Policy {
    /// The facts of this policy for a model of `depth` blocks.
    pub fn info(self, depth: usize) -> PolicyInfo {
        let d = self.def();
        PolicyInfo {
            name: d.name(),
            help: d.help(),
            reads: d.reads(),
            merges: d.merges(),
            keep_rule: d.keep_rule(),
            default_threshold: (d.keep_rule() == KeepRule::Threshold)
                .then(|| d.default_threshold()),
            default_blocks: d.default_blocks(depth),
            default_shape: d.default_shape(),
            options: d.options().iter().map(|o| o.name()).collect(),
        }
    }
}
