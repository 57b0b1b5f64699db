//! The options policies take. One shared bag of values; each policy lists the ones it reads
//! ([`crate::prune::PolicyDef::options`]), and giving any other is an error.

use std::hash::{Hash, Hasher};

use crate::error::{Error, Result};
use crate::gpu::kernels::HeadCombine;

/// An option a policy may read, by its `--name`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opt {
    Sim,
    Heads,
    Iters,
    Seed,
    Protect,
}

impl Opt {
    pub fn name(self) -> &'static str {
        match self {
            Opt::Sim => "sim",
            Opt::Heads => "heads",
            Opt::Iters => "iters",
            Opt::Seed => "seed",
            Opt::Protect => "protect",
        }
    }
}

/// Options of the policies; each policy reads the ones it lists.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PruneOptions {
    /// Zero-TPrune: the share of a step's drop done by the similarity stage (0..=1).
    pub sim: f32,
    /// How per-head PageRank scores combine (zero-tprune, wpr).
    pub heads: HeadCombine,
    /// The variance band of `HeadCombine::Band`.
    pub band: (f32, f32),
    /// PageRank stops when the L1 change of the scores is below this.
    pub eps: f32,
    /// Random policy seed.
    pub seed: u32,
    /// PageRank iterations at every block, instead of the per-block default.
    pub iters: Option<u32>,
    /// tome-protect: the share of the patch tokens, by importance, that never merge away (0..1).
    pub protect: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            sim: 0.5,
            heads: HeadCombine::Band,
            band: (0.01, 0.7),
            eps: 1e-6,
            seed: 0,
            iters: None,
            protect: 0.1,
        }
    }
}

// Validated options hold no NaN, so comparing floats by value is an equivalence; the hash reads
// their bits (programs are cached per schedule and options).
impl Eq for PruneOptions {}

impl Hash for PruneOptions {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.sim.to_bits().hash(state);
        self.heads.hash(state);
        self.band.0.to_bits().hash(state);
        self.band.1.to_bits().hash(state);
        self.eps.to_bits().hash(state);
        self.seed.hash(state);
        self.iters.hash(state);
        self.protect.to_bits().hash(state);
    }
}

impl PruneOptions {
    /// Patch tokens of `tokens` that tome-protect keeps from merging away:
    /// `ceil(protect * tokens - 1e-9)` in f64.
    pub fn protected(&self, tokens: usize) -> usize {
        (self.protect * tokens as f64 - 1e-9).ceil().max(0.0) as usize
    }

    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.sim) {
            return Err(Error::param(
                "sim",
                format!("must be in [0, 1], got {}", self.sim),
            ));
        }
        if self.band.0.is_nan() || self.band.1.is_nan() || self.band.0 > self.band.1 {
            return Err(Error::param("band", "the lower bound exceeds the upper"));
        }
        if self.iters == Some(0) {
            return Err(Error::param("iters", "PageRank needs at least 1 iteration"));
        }
        if let Some(t) = self
            .iters
            .filter(|&t| t > crate::limits::MAX_PAGERANK_ITERS)
        {
            return Err(Error::param(
                "iters",
                format!(
                    "{t} is over the limit of {} (PageRank converges in tens)",
                    crate::limits::MAX_PAGERANK_ITERS
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.protect) {
            return Err(Error::param(
                "protect",
                format!("must be in [0, 1), got {}", self.protect),
            ));
        }
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(Error::param("eps", "must be >= 0"));
        }
        Ok(())
    }
}
