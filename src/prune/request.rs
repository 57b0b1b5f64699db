//! A pruning request as a user writes it: a policy name, at most one schedule and the options,
//! all as plain values. The command line (`--policy`, `--flops`, ...) and the browser
//! (`{policy: "zero-tprune", flops: 0.65}`) both fill one in and resolve it here.

use crate::error::{Error, Result};
use crate::model::{Modality, TokenGeometry};
use crate::prune::{HeadCombine, Opt, Policy, PruneOptions, Pruning, ScheduleFile, ScheduleSpec};

/// The user-facing pruning settings; `None` fields take the documented defaults.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(default, deny_unknown_fields)]
pub struct PruneRequest {
    /// A registered policy's name (`Policy::all`; default: none, or the recommended policy when a
    /// schedule is given: `Policy::recommended`).
    pub policy: Option<String>,
    /// Keep rates, `RATE@BLOCKS` groups joined with `;`, e.g. `0.7@3,6,9`.
    pub keep: Option<String>,
    /// Exact patch-token counts, `BLOCK:COUNT,...`.
    pub tokens: Option<String>,
    /// Target fraction of the dense FLOPs.
    pub flops: Option<f64>,
    /// Threshold policy: `THETA@BLOCKS`.
    pub threshold: Option<String>,
    /// Blocks a `flops` target prunes at, e.g. `3,6,9`.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "string | number[]"))]
    pub at: Option<String>,
    /// Zero-TPrune: share of each step's drop done by the similarity stage.
    pub sim: Option<f32>,
    /// mean, rms or band.
    pub heads: Option<String>,
    /// PageRank iterations at every pruning block.
    pub iters: Option<u32>,
    /// Random policy seed.
    pub seed: Option<u32>,
    /// tome-protect: the share of tokens, by importance, that never merge away.
    pub protect: Option<f64>,
    /// A schedule file's contents (`zeroprune tune`): its policy, token counts and options; the
    /// request's own options override the file's.
    #[cfg_attr(target_arch = "wasm32", tsify(type = "ScheduleFile | string"))]
    pub schedule: Option<ScheduleFile>,
    /// What the model's items are (set where the request meets a model): the recommended policy
    /// of a schedule without one is measured per modality.
    #[serde(skip)]
    pub modality: Modality,
}

impl PruneRequest {
    /// The policy named, else: with `threshold`, the threshold policy; with another schedule
    /// (`flops`, `keep`, `tokens`), the recommended policy ([`Policy::recommended`]: for a FLOPs
    /// target, the one measured best at the nearest level); with none, the dense model.
    pub fn policy(&self) -> Result<Policy> {
        self.policy_for(self.modality)
    }

    /// [`Self::policy`] on a model whose items are `modality`.
    fn policy_for(&self, modality: Modality) -> Result<Policy> {
        match &self.policy {
            Some(name) => name.parse(),
            None if self.threshold.is_some() => "threshold".parse(),
            None if self.flops.is_some() => Ok(Policy::recommended(self.flops, modality)),
            None if self.keep.is_some() || self.tokens.is_some() => {
                Ok(Policy::recommended(None, modality))
            }
            None => Ok(Policy::none()),
        }
    }

    /// The request bound to a model whose items are `modality`: which policy is recommended.
    pub fn for_modality(self, modality: Modality) -> Self {
        PruneRequest { modality, ..self }
    }

    /// The request with a schedule file's settings filled in: its policy (another policy given
    /// alongside is an error), its token counts as the schedule, and its options where the request
    /// gives none.
    fn with_schedule_file(&self) -> Result<PruneRequest> {
        let Some(file) = &self.schedule else {
            return Ok(self.clone());
        };
        let file_policy = Policy::named(&file.policy)?;
        if let Some(p) = &self.policy {
            if Policy::named(p)? != file_policy {
                return Err(Error::param(
                    "schedule",
                    format!(
                        "the schedule file is for policy {file_policy}, not {}",
                        p.trim()
                    ),
                ));
            }
        }
        Ok(PruneRequest {
            policy: Some(file.policy.clone()),
            tokens: Some(file.tokens.clone()),
            sim: self.sim.or(file.sim),
            heads: self.heads.clone().or(file.heads.clone()),
            iters: self.iters.or(file.iters),
            seed: self.seed.or(file.seed),
            protect: self.protect.or(file.protect),
            schedule: None,
            ..self.clone()
        })
    }

    /// The one schedule given (more than one is an error naming them).
    pub fn spec(&self) -> Result<ScheduleSpec> {
        let given: Vec<&str> = [
            ("keep", self.keep.is_some()),
            ("tokens", self.tokens.is_some()),
            ("flops", self.flops.is_some()),
            ("threshold", self.threshold.is_some()),
            ("schedule", self.schedule.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name)
        .collect();
        if given.len() > 1 {
            return Err(Error::param(
                given[1],
                format!("give one schedule, not {}", given.join(" and ")),
            ));
        }
        if self.at.is_some() && self.flops.is_none() {
            return Err(Error::param(
                "at",
                "the pruning blocks go with a flops target",
            ));
        }
        if let Some(k) = &self.keep {
            ScheduleSpec::parse_keep(k)
        } else if let Some(t) = &self.tokens {
            ScheduleSpec::parse_tokens(t)
        } else if let Some(f) = self.flops {
            ScheduleSpec::flops(f, self.at.as_deref())
        } else if let Some(t) = &self.threshold {
            ScheduleSpec::parse_threshold(t)
        } else {
            Ok(ScheduleSpec::Default)
        }
    }

    pub fn options(&self) -> Result<PruneOptions> {
        let mut o = PruneOptions {
            seed: self.seed.unwrap_or(0),
            iters: self.iters,
            ..Default::default()
        };
        if let Some(s) = self.sim {
            o.sim = s;
        }
        if let Some(h) = &self.heads {
            o.heads = h.parse::<HeadCombine>()?;
        }
        if let Some(p) = self.protect {
            o.protect = p;
        }
        Ok(o)
    }

    /// The options given, by name.
    fn given(&self) -> Vec<Opt> {
        [
            (Opt::Sim, self.sim.is_some()),
            (Opt::Heads, self.heads.is_some()),
            (Opt::Iters, self.iters.is_some()),
            (Opt::Seed, self.seed.is_some()),
            (Opt::Protect, self.protect.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(o, _)| o)
        .collect()
    }

    /// The schedule for this model, with every limit checked; an option the policy does not
    /// read is an error naming the policies that do.
    pub fn resolve(&self, g: &TokenGeometry) -> Result<Pruning> {
        // One schedule at most, the file's included.
        self.spec()?;
        if let Some(file) = &self.schedule {
            file.check_model(g)?;
        }
        let request = self.with_schedule_file()?;
        request.resolve_plain(g)
    }

    fn resolve_plain(&self, g: &TokenGeometry) -> Result<Pruning> {
        self.resolve_as(g, &self.spec()?)
    }

    /// The request's policy and options with `spec` as the schedule (what [`super::Pruner`]
    /// builds for thresholds it scales), every check as in [`PruneRequest::resolve`].
    pub(crate) fn resolve_as(&self, g: &TokenGeometry, spec: &ScheduleSpec) -> Result<Pruning> {
        let policy = self.policy_for(g.modality)?;
        let given = self.given();
        if policy.is_none() && !given.is_empty() {
            let names: Vec<_> = given.iter().map(|o| o.name()).collect();
            return Err(Error::param(
                "policy",
                format!(
                    "{} need a pruning policy (e.g. zero-tprune)",
                    names.join(", ")
                ),
            ));
        }
        if let Some(o) = given.iter().find(|o| !policy.def().options().contains(o)) {
            let readers: Vec<_> = Policy::all()
                .iter()
                .filter(|p| p.def().options().contains(o))
                .map(|p| p.name())
                .collect();
            return Err(Error::param(
                o.name(),
                format!(
                    "{policy}{} does not read --{}; it applies to {}",
                    if self.policy.is_none() {
                        " (the recommended policy, run as no --policy was given)"
                    } else {
                        ""
                    },
                    o.name(),
                    readers.join(", ")
                ),
            ));
        }
        Pruning::resolve(policy, spec, self.options()?, g)
    }
}
