//! Schedules: at which blocks a policy prunes and how many patch tokens survive each step, given as
//! keep rates (`0.7@3,6,9`), token counts (`3:138,6:96`), thresholds (`1.0@3,6,9`) or a FLOPs target
//! that is solved into keep rates. FLOPs of a schedule are counted exactly.

use super::options::PruneOptions;
use super::policy::{KeepRule, Policy, KEEP_RATE_FAMILY};
use crate::error::{Error, Result};
use crate::model::TokenGeometry;

/// The schedule of a policy given without one: 80% of the dense FLOPs at the default blocks
/// (where Zero-TPrune stays within a few tenths of a point of dense top-1 on DeiT-Tiny).
pub const DEFAULT_FLOPS: f64 = 0.8;

/// The threshold policy's default: about 80% of the dense FLOPs on DeiT-Tiny at the default blocks
/// (a threshold policy may say otherwise: `PolicyDef::default_threshold`).
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// A schedule as the user wrote it.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleSpec {
    /// Policy default: [`DEFAULT_FLOPS`] at the policy's default blocks ([`DEFAULT_THRESHOLD`] for
    /// the threshold policy).
    Default,
    /// `(rate, blocks)`: keep `ceil(rate * n)` of the `n` patch tokens entering each listed block.
    Keep(Vec<(f64, Vec<usize>)>),
    /// `(block, patch tokens kept)`.
    Tokens(Vec<(usize, usize)>),
    /// The same keep rate at `blocks` (default: the policy's), the largest whose FLOPs are
    /// `<= target * dense`.
    Flops {
        target: f64,
        blocks: Option<Vec<usize>>,
    },
    /// `(theta, blocks)` for the threshold policy.
    Threshold(Vec<(f32, Vec<usize>)>),
}

/// `3,6,9`: block numbers; `what` names the parameter in errors.
pub(crate) fn parse_blocks(s: &str, what: &'static str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|b| {
            b.trim().parse::<usize>().map_err(|_| {
                Error::param(
                    what,
                    format!("'{b}' is not a block number (blocks count from 0)"),
                )
            })
        })
        .collect()
}

/// `R@I,J;R2@K` groups; at least one.
fn parse_rate_groups(s: &str, what: &'static str) -> Result<Vec<(f64, Vec<usize>)>> {
    if s.trim().is_empty() {
        return Err(Error::param(
            what,
            "is empty; give value@blocks, e.g. 0.7@3,6,9",
        ));
    }
    s.split(';')
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            let (rate, blocks) = g.split_once('@').ok_or_else(|| {
                Error::param(
                    what,
                    format!("'{g}' should look like 0.7@3,6,9 (value@blocks)"),
                )
            })?;
            let rate: f64 = rate
                .trim()
                .parse()
                .map_err(|_| Error::param(what, format!("'{rate}' is not a number")))?;
            Ok((rate, parse_blocks(blocks, what)?))
        })
        .collect()
}

impl ScheduleSpec {
    /// `--keep 0.7@3,6,9` (groups joined by `;`).
    pub fn parse_keep(s: &str) -> Result<Self> {
        let groups = parse_rate_groups(s, "keep")?;
        for (rate, _) in &groups {
            if !(*rate > 0.0 && *rate <= 1.0) {
                return Err(Error::param(
                    "keep",
                    format!("keep rate {rate} is outside (0, 1]"),
                ));
            }
        }
        Ok(ScheduleSpec::Keep(groups))
    }

    /// `--tokens 3:138,6:96`.
    pub fn parse_tokens(s: &str) -> Result<Self> {
        if s.trim().is_empty() {
            return Err(Error::param(
                "tokens",
                "is empty; give block:tokens pairs, e.g. 3:138,6:96",
            ));
        }
        let steps =
            s.split(',')
                .map(|item| {
                    let (b, k) = item.split_once(':').ok_or_else(|| {
                        Error::param(
                            "tokens",
                            format!("'{item}' should look like 3:138 (block:patch tokens kept)"),
                        )
                    })?;
                    let block = b.trim().parse::<usize>().map_err(|_| {
                        Error::param("tokens", format!("'{b}' is not a block number"))
                    })?;
                    let keep = k.trim().parse::<usize>().map_err(|_| {
                        Error::param("tokens", format!("'{k}' is not a token count"))
                    })?;
                    Ok((block, keep))
                })
                .collect::<Result<Vec<_>>>()?;
        Ok(ScheduleSpec::Tokens(steps))
    }

    /// `--flops 0.65` with optional `--at 3,6,9`.
    pub fn flops(target: f64, at: Option<&str>) -> Result<Self> {
        if !(target > 0.0 && target <= 1.0) {
            return Err(Error::param(
                "flops",
                format!("the FLOPs target {target} is outside (0, 1] (a fraction of dense)"),
            ));
        }
        let blocks = at.map(|s| parse_blocks(s, "at")).transpose()?;
        Ok(ScheduleSpec::Flops { target, blocks })
    }

    /// `--threshold 1.0@3,6,9`: drop patch tokens whose received attention, scaled so uniform is 1,
    /// is below the value.
    pub fn parse_threshold(s: &str) -> Result<Self> {
        let groups = parse_rate_groups(s, "threshold")?;
        for (theta, _) in &groups {
            // Kernels read it as f32: 1e300 is finite here and infinite there.
            if !((*theta as f32).is_finite() && *theta >= 0.0) {
                return Err(Error::param(
                    "threshold",
                    format!("threshold {theta} must be a finite number >= 0 (as f32)"),
                ));
            }
        }
        Ok(ScheduleSpec::Threshold(
            groups.into_iter().map(|(t, b)| (t as f32, b)).collect(),
        ))
    }
}

/// How many patch tokens a step keeps.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Keep {
    Tokens(usize),
    /// Threshold pruning: the count is decided per image on the GPU.
    Threshold(f32),
}

/// One pruning step: after the attention of `block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PruneStep {
    pub block: usize,
    /// Patch tokens entering the step (the rows after threshold steps: an upper bound).
    pub tokens_in: usize,
    pub keep: Keep,
}

// Thresholds are finite (checked when parsed), so comparing them by value is an equivalence.
impl Eq for Keep {}

impl std::hash::Hash for Keep {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match *self {
            Keep::Tokens(k) => (0u8, k as u64).hash(state),
            Keep::Threshold(t) => (1u8, t.to_bits() as u64).hash(state),
        }
    }
}

impl PruneStep {
    /// Patch-token rows per image after the step (threshold keeps the rows, masked).
    pub fn tokens_out(&self) -> usize {
        match self.keep {
            Keep::Tokens(k) => k,
            Keep::Threshold(_) => self.tokens_in,
        }
    }
}

/// A policy with its resolved schedule, checked against a model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Pruning {
    pub policy: Policy,
    pub options: PruneOptions,
    pub steps: Vec<PruneStep>,
}

impl Pruning {
    pub fn dense() -> Self {
        Pruning {
            policy: Policy::none(),
            options: PruneOptions::default(),
            steps: vec![],
        }
    }

    pub fn is_dense(&self) -> bool {
        self.steps.is_empty()
    }

    /// Turn `spec` into concrete steps for model `c`, checking every limit.
    pub fn resolve(
        policy: Policy,
        spec: &ScheduleSpec,
        options: PruneOptions,
        g: &TokenGeometry,
    ) -> Result<Self> {
        options.validate()?;
        let patches = g.prunable;
        let depth = g.depth;
        // Nothing to prune (a text of [CLS] and [SEP] alone): every rule below assumes a token.
        if patches == 0 && !policy.is_none() {
            return Err(Error::param(
                "policy",
                "the input has no prunable token (only protected ones)",
            ));
        }
        let mk = |steps| Pruning {
            policy,
            options: options.clone(),
            steps,
        };
        if policy.is_none() {
            if !matches!(spec, ScheduleSpec::Default) {
                return Err(Error::param(
                    "policy",
                    "policy 'none' runs the dense model and takes no schedule (--keep/--tokens/--flops/--threshold)",
                ));
            }
            return Ok(mk(vec![]));
        }
        let is_threshold = policy.def().keep_rule() == KeepRule::Threshold;
        let threshold_spec = matches!(spec, ScheduleSpec::Threshold(_));
        let fixed_spec = !threshold_spec && !matches!(spec, ScheduleSpec::Default);
        if (is_threshold && fixed_spec) || (!is_threshold && threshold_spec) {
            return Err(Error::param(
                if is_threshold { "threshold" } else { "policy" },
                if is_threshold {
                    format!(
                        "policy {policy} keeps a count decided per image: give --threshold \
                         VALUE@BLOCKS, or --flops with data to calibrate on (not --keep/--tokens)"
                    )
                } else {
                    format!("--threshold only applies to {}", threshold_policies())
                },
            ));
        }

        // (block, keep) pairs in block order.
        let check_block = |b: usize, what: &'static str| {
            if b >= depth {
                Err(Error::param(
                    what,
                    format!("block {b} is outside the model (blocks 0..{})", depth - 1),
                ))
            } else {
                Ok(b)
            }
        };
        let steps = match spec {
            ScheduleSpec::Default if is_threshold => Self::from_thresholds(
                &[(
                    policy.def().default_threshold(),
                    policy.def().default_blocks(depth),
                )],
                patches,
            )?,
            ScheduleSpec::Default => Self::solve_default_shape(policy, &options, g, DEFAULT_FLOPS)?,
            ScheduleSpec::Keep(groups) => {
                for (_, blocks) in groups {
                    for &b in blocks {
                        check_block(b, "keep")?;
                    }
                }
                Self::from_rates(groups, patches, "keep")?
            }
            ScheduleSpec::Threshold(groups) => {
                for (_, blocks) in groups {
                    for &b in blocks {
                        check_block(b, "threshold")?;
                    }
                }
                Self::from_thresholds(groups, patches)?
            }
            ScheduleSpec::Tokens(list) => {
                let mut list = list.clone();
                list.sort_by_key(|&(b, _)| b);
                let mut n = patches;
                let mut steps = vec![];
                for (i, &(b, k)) in list.iter().enumerate() {
                    check_block(b, "tokens")?;
                    if i > 0 && list[i - 1].0 == b {
                        return Err(Error::param("tokens", format!("block {b} is listed twice")));
                    }
                    if k == 0 || k > n {
                        return Err(Error::param(
                            "tokens",
                            format!(
                                "block {b} keeps {k} patch tokens, but {n} enter it (must be 1..={n})"
                            ),
                        ));
                    }
                    steps.push(PruneStep {
                        block: b,
                        tokens_in: n,
                        keep: Keep::Tokens(k),
                    });
                    n = k;
                }
                steps
            }
            ScheduleSpec::Flops {
                target,
                blocks: None,
            } => Self::solve_default_shape(policy, &options, g, *target)?,
            ScheduleSpec::Flops {
                target,
                blocks: Some(blocks),
            } => {
                for &b in blocks {
                    check_block(b, "at")?;
                }
                Self::solve_flops(policy, &options, g, *target, blocks)?
            }
        };
        let pruning = mk(steps);
        pruning.check_step_limits()?;
        Ok(pruning)
    }

    fn dedup_blocks(groups: &[(f64, Vec<usize>)], what: &'static str) -> Result<Vec<(usize, f64)>> {
        let mut all: Vec<(usize, f64)> = groups
            .iter()
            .flat_map(|(r, bs)| bs.iter().map(move |&b| (b, *r)))
            .collect();
        all.sort_by_key(|&(b, _)| b);
        if let Some(w) = all.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::param(
                what,
                format!("block {} is listed twice", w[0].0),
            ));
        }
        Ok(all)
    }

    /// Keep `ceil(rate * n)` (at least 1) of the `n` patch tokens entering each listed block.
    fn from_rates(
        groups: &[(f64, Vec<usize>)],
        patches: usize,
        what: &'static str,
    ) -> Result<Vec<PruneStep>> {
        let mut n = patches;
        Ok(Self::dedup_blocks(groups, what)?
            .into_iter()
            .map(|(block, rate)| {
                let k = ((rate * n as f64 - 1e-6).ceil() as usize).clamp(1, n);
                let step = PruneStep {
                    block,
                    tokens_in: n,
                    keep: Keep::Tokens(k),
                };
                n = k;
                step
            })
            .collect())
    }

    fn from_thresholds(groups: &[(f32, Vec<usize>)], patches: usize) -> Result<Vec<PruneStep>> {
        let as_f64: Vec<_> = groups.iter().map(|(t, b)| (*t as f64, b.clone())).collect();
        Ok(Self::dedup_blocks(&as_f64, "threshold")?
            .into_iter()
            .map(|(block, theta)| PruneStep {
                block,
                tokens_in: patches,
                keep: Keep::Threshold(theta as f32),
            })
            .collect())
    }

    /// A FLOPs target in the policy's default shape: its keep rate at its default blocks, or the
    /// first of its search families that reaches the target, scaled to it.
    fn solve_default_shape(
        policy: Policy,
        options: &PruneOptions,
        g: &TokenGeometry,
        target: f64,
    ) -> Result<Vec<PruneStep>> {
        let mut last = None;
        for &family in policy.def().default_shape().0 {
            let fitted = if family == KEEP_RATE_FAMILY {
                let blocks = policy.def().default_blocks(g.depth);
                Self::solve_flops(policy, options, g, target, &blocks)
            } else {
                super::search::fit_family(policy, options, g, target, family).map(|p| p.steps)
            };
            match fitted {
                Ok(steps) => return Ok(steps),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::param("flops", format!("{policy} has no default shape"))))
    }

    /// The largest keep rate, in steps of 1/1000, whose schedule at `blocks` fits the target.
    fn solve_flops(
        policy: Policy,
        options: &PruneOptions,
        g: &TokenGeometry,
        target: f64,
        blocks: &[usize],
    ) -> Result<Vec<PruneStep>> {
        if blocks.is_empty() {
            return Err(Error::param("at", "no blocks to prune at"));
        }
        let budget = target * g.dense_flops();
        let group = |r: f64| vec![(r, blocks.to_vec())];
        let mut lowest = f64::INFINITY;
        for milli in (1..=1000).rev() {
            let rate = milli as f64 / 1000.0;
            let steps = Self::from_rates(&group(rate), g.prunable, "at")?;
            let candidate = Pruning {
                policy,
                options: options.clone(),
                steps,
            };
            // Lower rates remove more: past the policy's per-step limit, none fits.
            if candidate.check_step_limits().is_err() {
                break;
            }
            let f = candidate.flops(g);
            lowest = lowest.min(f);
            if f <= budget * (1.0 + 1e-12) {
                return Ok(candidate.steps);
            }
        }
        let why = policy
            .def()
            .step_limit(g.prunable, options)
            .why
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        Err(Error::param(
            "flops",
            format!(
                "the FLOPs target {target} is below what {policy} can reach pruning at blocks {:?}: \
                 the lowest is {:.3} of dense{why}",
                blocks,
                lowest / g.dense_flops(),
            ),
        ))
    }

    /// The policy's limit on what one step may remove (ToMe: half the patch tokens entering it).
    fn check_step_limits(&self) -> Result<()> {
        for s in &self.steps {
            let limit = self.policy.def().step_limit(s.tokens_in, &self.options);
            let removed = s.tokens_in - s.tokens_out();
            if removed > limit.max_removed {
                return Err(Error::param(
                    "keep",
                    format!(
                        "{}: block {} would remove {removed} of {} patch tokens (keep at least {})",
                        limit.why.unwrap_or("too many tokens removed in one step"),
                        s.block,
                        s.tokens_in,
                        s.tokens_in - limit.max_removed
                    ),
                ));
            }
        }
        Ok(())
    }

    /// FLOPs per item when step `i` keeps `kept[i]` prunable rows.
    pub fn flops_with(&self, g: &TokenGeometry, kept: &[usize]) -> f64 {
        let mut n = g.rows();
        let mut total = g.fixed_flops;
        for block in 0..g.depth {
            let mut m = n;
            if let Some(i) = self.steps.iter().position(|s| s.block == block) {
                m = g.protected + kept.get(i).copied().unwrap_or(self.steps[i].tokens_out());
            }
            total += g.block_flops(n, m);
            n = m;
        }
        total
    }

    /// FLOPs per item of a fixed schedule (threshold: the upper bound, nothing dropped).
    pub fn flops(&self, g: &TokenGeometry) -> f64 {
        let kept: Vec<usize> = self.steps.iter().map(PruneStep::tokens_out).collect();
        self.flops_with(g, &kept)
    }

    /// `3:138,6:96,9:67`, or `3:<1.0` for thresholds; `dense` without steps.
    pub fn describe(&self) -> String {
        if self.steps.is_empty() {
            return "dense".into();
        }
        self.steps
            .iter()
            .map(|s| match s.keep {
                Keep::Tokens(k) => format!("{}:{k}", s.block),
                Keep::Threshold(t) => format!("{}:<{t}", s.block),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The policies that keep a count decided per image by a threshold, for messages:
/// `--policy threshold or --policy zero-tprune-adaptive`.
pub fn threshold_policies() -> String {
    Policy::all()
        .iter()
        .filter(|p| p.def().keep_rule() == KeepRule::Threshold)
        .map(|p| format!("--policy {p}"))
        .collect::<Vec<_>>()
        .join(" or ")
}
