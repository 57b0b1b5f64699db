//! Schedule search: at which blocks a policy prunes and how many tokens each step keeps, under a
//! budget (a FLOPs ratio, or a cost the caller measures, such as latency on this adapter).
//!
//! 1. Families: removal profiles over the blocks (the same number at every block, from a quarter of
//!    the depth on, at every other block from 2; rising, falling and late-heavy ramps), each scaled
//!    to the weakest removal that fits the budget, plus the policy's constant keep rate at its
//!    default blocks.
//! 2. Local search: move `max(1, round(0.02 N))` tokens of removal between neighbouring blocks, refit
//!    the budget at the last pruning block, and keep the best move while one improves the score.
//!
//! Candidates are scored by the caller (`zeroprune tune`: agreement with the dense model on
//! calibration images, mean KL as the tie-break); the search never sees images. The algorithm is
//! written out in docs/pruning.md, and `tests/reference/quality.py` runs the same search.

use super::{Policy, PruneOptions, Pruning, ScheduleSpec};
use crate::error::{Error, Result};
use crate::model::TokenGeometry;

/// How good a candidate is: more images agreeing with the dense model, then a lower mean
/// KL(dense || pruned).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    pub agree: usize,
    pub images: usize,
    pub kl: f64,
}

impl Score {
    pub fn better_than(&self, other: &Score) -> bool {
        self.agree > other.agree || (self.agree == other.agree && self.kl < other.kl)
    }

    pub fn agreement(&self) -> f64 {
        self.agree as f64 / self.images.max(1) as f64
    }
}

/// One evaluated schedule.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Candidate {
    /// The family (`uniform@all`, ...) or move (`move 4 from 7 to 6`) that produced it.
    pub how: String,
    pub pruning: Pruning,
    /// The budget's measure: a FLOPs ratio, or the caller's cost.
    pub cost: f64,
    pub score: Score,
}

/// What the search needs to know.
pub struct Space<'a> {
    pub policy: Policy,
    pub options: PruneOptions,
    pub config: &'a TokenGeometry,
    /// The budget: candidates cost at most this much.
    pub limit: f64,
    /// Patch-token counts are snapped down so that `prefix + count` is a multiple of this (1: no
    /// snapping).
    pub granularity: usize,
    /// Rounds of local search.
    pub rounds: usize,
}

/// The removal profiles of the families, for a model of `depth` blocks.
pub fn families(depth: usize) -> Vec<(&'static str, Vec<f64>)> {
    let l = depth as f64;
    let w = |f: &dyn Fn(usize) -> f64| (0..depth).map(f).collect::<Vec<f64>>();
    vec![
        ("uniform@all", w(&|_| 1.0)),
        ("uniform@late", w(&|i| (i >= depth / 4) as u8 as f64)),
        (
            "uniform@every-other",
            w(&|i| (i >= 2 && i + 1 < depth && i % 2 == 0) as u8 as f64),
        ),
        ("rising", w(&|i| (i + 1) as f64 / l)),
        ("falling", w(&|i| (depth - i) as f64 / l)),
        ("late-heavy", w(&|i| ((i + 1) as f64 / l).powi(2))),
    ]
}

/// Round half away from zero, as the reference does.
fn round(x: f64) -> usize {
    (x + 0.5).floor().max(0.0) as usize
}

/// The removal of `profile` scaled by `t`: `round(t * w_i)` at every block.
fn scaled(profile: &[f64], t: f64) -> Vec<usize> {
    profile.iter().map(|w| round(t * w)).collect()
}

impl Space<'_> {
    fn patches(&self) -> usize {
        self.config.prunable
    }

    /// The schedule that removes `removal[i]` patch tokens at block `i` (counts snapped to the
    /// granularity); `None` when it is not valid for the policy.
    pub fn schedule(&self, removal: &[usize]) -> Option<Pruning> {
        let prefix = self.config.protected;
        let g = self.granularity.max(1);
        let mut n = self.patches();
        let mut tokens = vec![];
        for (block, &r) in removal.iter().enumerate() {
            if r == 0 {
                continue;
            }
            let mut k = n.checked_sub(r).filter(|&k| k >= 1)?;
            if g > 1 {
                let rows = (prefix + k) / g * g;
                if rows <= prefix {
                    return None;
                }
                k = rows - prefix;
            }
            if k < n {
                tokens.push((block, k));
                n = k;
            }
        }
        if tokens.is_empty() {
            return None;
        }
        Pruning::resolve(
            self.policy,
            &ScheduleSpec::Tokens(tokens),
            self.options.clone(),
            self.config,
        )
        .ok()
    }

    /// The removal vector of `pruning` (one entry per block).
    pub fn removal(&self, pruning: &Pruning) -> Vec<usize> {
        let mut r = vec![0; self.config.depth];
        for s in &pruning.steps {
            r[s.block] = s.tokens_in - s.tokens_out();
        }
        r
    }

    /// The strongest valid scaling `t` of `profile` (removal `round(t * w_i)`), by 40 bisection
    /// steps on `[0, N]`.
    fn strongest_scaling(&self, profile: &[f64]) -> f64 {
        let at = |t: f64| scaled(profile, t);
        let (mut lo, mut hi) = (0.0, self.patches() as f64);
        if self.schedule(&at(hi)).is_none() {
            for _ in 0..40 {
                let mid = 0.5 * (lo + hi);
                if self.schedule(&at(mid)).is_some() {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            hi = lo;
        }
        hi
    }

    /// The weakest scaling `t` of `profile` (removal `round(t * w_i)`) that fits the budget.
    fn fit_profile(
        &self,
        profile: &[f64],
        cost: &mut dyn FnMut(&Pruning) -> Result<f64>,
    ) -> Result<Option<(Pruning, f64)>> {
        let at = |t: f64| scaled(profile, t);
        let mut hi = self.strongest_scaling(profile);
        let Some(strongest) = self.schedule(&at(hi)) else {
            return Ok(None);
        };
        let c = cost(&strongest)?;
        if c > self.limit {
            return Ok(None);
        }
        // The weakest scaling within the budget; stop once the rounded removal stops changing.
        let mut best = (strongest, c);
        let mut lo = 0.0;
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if at(mid) == at(hi) || at(mid) == at(lo) {
                break;
            }
            match self.schedule(&at(mid)) {
                Some(p) => {
                    let c = cost(&p)?;
                    if c <= self.limit {
                        hi = mid;
                        best = (p, c);
                    } else {
                        lo = mid;
                    }
                }
                None => lo = mid,
            }
        }
        Ok(Some(best))
    }

    /// The largest keep rate (in steps of 1/1000) at `blocks` that fits the budget.
    fn fit_keep_rate(
        &self,
        blocks: &[usize],
        cost: &mut dyn FnMut(&Pruning) -> Result<f64>,
    ) -> Result<Option<(Pruning, f64)>> {
        let at = |milli: usize| -> Option<Pruning> {
            let spec = ScheduleSpec::Keep(vec![(milli as f64 / 1000.0, blocks.to_vec())]);
            let p = Pruning::resolve(self.policy, &spec, self.options.clone(), self.config).ok()?;
            self.schedule(&self.removal(&p))
        };
        // Validity holds from some rate up: find the lowest valid rate.
        let (mut lo, mut hi) = (0usize, 1000usize);
        if at(1).is_some() {
            hi = 1;
        } else {
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                if at(mid).is_some() {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
        }
        let Some(lowest) = at(hi) else {
            return Ok(None);
        };
        let c = cost(&lowest)?;
        if c > self.limit {
            return Ok(None);
        }
        // The largest rate within the budget.
        let (mut best, mut lo, mut hi) = ((lowest, c), hi, 1001usize);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            // No removal at all (a rate near 1) costs the whole budget and more.
            let Some(p) = at(mid) else {
                hi = mid;
                continue;
            };
            let c = cost(&p)?;
            if c <= self.limit {
                best = (p, c);
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(Some(best))
    }

    /// Refit `removal` to the budget at its last pruning block: remove more there while over it,
    /// fewer while it still fits.
    fn refit(
        &self,
        mut removal: Vec<usize>,
        cost: &mut dyn FnMut(&Pruning) -> Result<f64>,
    ) -> Result<Option<(Pruning, f64)>> {
        let Some(last) = removal.iter().rposition(|&r| r > 0) else {
            return Ok(None);
        };
        let Some(mut p) = self.schedule(&removal) else {
            return Ok(None);
        };
        let mut c = cost(&p)?;
        while c > self.limit {
            removal[last] += self.granularity.max(1);
            let Some(q) = self.schedule(&removal) else {
                return Ok(None);
            };
            (p, c) = (q.clone(), cost(&q)?);
        }
        while removal[last] > self.granularity.max(1) {
            let mut fewer = removal.clone();
            fewer[last] -= self.granularity.max(1);
            match self.schedule(&fewer) {
                Some(q) => {
                    let cq = cost(&q)?;
                    if cq > self.limit {
                        break;
                    }
                    (removal, p, c) = (fewer, q, cq);
                }
                None => break,
            }
        }
        Ok(Some((p, c)))
    }

    /// Run the search; `report` sees every evaluated candidate as it is scored.
    pub fn search(
        &self,
        cost: &mut dyn FnMut(&Pruning) -> Result<f64>,
        score: &mut dyn FnMut(&Pruning) -> Result<Score>,
        report: &mut dyn FnMut(&Candidate),
    ) -> Result<Candidate> {
        let mut evaluate = |how: String, pruning: Pruning, c: f64| -> Result<Candidate> {
            let s = score(&pruning)?;
            let cand = Candidate {
                how,
                pruning,
                cost: c,
                score: s,
            };
            report(&cand);
            Ok(cand)
        };
        let mut seen: Vec<Pruning> = vec![];
        let mut best: Option<Candidate> = None;
        let consider = |cand: Candidate, best: &mut Option<Candidate>| {
            if best
                .as_ref()
                .is_none_or(|b| cand.score.better_than(&b.score))
            {
                *best = Some(cand);
            }
        };
        // 1. Families.
        let mut starts: Vec<(String, Pruning, f64)> = vec![];
        for (name, profile) in families(self.config.depth) {
            if let Some((p, c)) = self.fit_profile(&profile, cost)? {
                starts.push((name.to_string(), p, c));
            }
        }
        let blocks = self.policy.def().default_blocks(self.config.depth);
        if let Some((p, c)) = self.fit_keep_rate(&blocks, cost)? {
            starts.push(("keep-rate@default".into(), p, c));
        }
        if starts.is_empty() {
            return Err(Error::param(
                "flops",
                format!(
                    "no schedule of {} within the policy's limits reaches the budget {}",
                    self.policy, self.limit
                ),
            ));
        }
        for (how, p, c) in starts {
            if seen.contains(&p) {
                continue;
            }
            seen.push(p.clone());
            let cand = evaluate(how, p, c)?;
            consider(cand, &mut best);
        }
        // 2. Local search: move removal between neighbouring blocks.
        let step = round(0.02 * self.patches() as f64).max(1);
        for _ in 0..self.rounds {
            let current = best.clone().expect("a family fits");
            let removal = self.removal(&current.pruning);
            let mut improved = false;
            for i in 0..self.config.depth.saturating_sub(1) {
                for (from, to) in [(i + 1, i), (i, i + 1)] {
                    if removal[from] < step {
                        continue;
                    }
                    let mut moved = removal.clone();
                    moved[from] -= step;
                    moved[to] += step;
                    let Some((p, c)) = self.refit(moved, cost)? else {
                        continue;
                    };
                    if seen.contains(&p) {
                        continue;
                    }
                    seen.push(p.clone());
                    let cand = evaluate(format!("move {step} from {from} to {to}"), p, c)?;
                    if cand.score.better_than(&best.as_ref().expect("set").score) {
                        improved = true;
                    }
                    consider(cand, &mut best);
                }
            }
            if !improved {
                break;
            }
        }
        Ok(best.expect("a family fits"))
    }
}

/// The schedule of `family` (one of [`families`]) scaled to the weakest removal within `target` x
/// the dense FLOPs: how `--flops` spreads the removal for a policy whose default shape is a family.
pub fn fit_family(
    policy: Policy,
    options: &PruneOptions,
    g: &TokenGeometry,
    target: f64,
    family: &str,
) -> Result<Pruning> {
    let (_, profile) = families(g.depth)
        .into_iter()
        .find(|(name, _)| *name == family)
        .ok_or_else(|| Error::param("flops", format!("no schedule family '{family}'")))?;
    let space = Space {
        policy,
        options: options.clone(),
        config: g,
        limit: target,
        granularity: 1,
        rounds: 0,
    };
    let mut cost = |p: &Pruning| Ok(flops_ratio(p, g));
    if let Some((p, _)) = space.fit_profile(&profile, &mut cost)? {
        return Ok(p);
    }
    let lowest = space
        .schedule(&scaled(&profile, space.strongest_scaling(&profile)))
        .map(|p| flops_ratio(&p, g));
    let why = policy
        .def()
        .step_limit(g.prunable, options)
        .why
        .map(|w| format!("; {w}"))
        .unwrap_or_default();
    Err(Error::param(
        "flops",
        format!(
            "the FLOPs target {target} is below what {policy} can reach with its default schedule \
             ({family}): the lowest is {}{why}; name the blocks with --at for a constant keep rate",
            lowest.map_or("none".to_string(), |l| format!("{l:.3} of dense")),
        ),
    ))
}

/// The FLOPs ratio of a schedule: the budget's measure for `--flops`.
pub fn flops_ratio(pruning: &Pruning, g: &TokenGeometry) -> f64 {
    pruning.flops(g) / g.dense_flops()
}
