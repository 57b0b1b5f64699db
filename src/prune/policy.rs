//! The pruning policies and their options.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::gpu::prune_kernels::HeadCombine;

/// Which tokens a pruning step keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The dense model.
    None,
    /// Zero-TPrune: pre-rank by received attention, drop near-duplicate keys, then Weighted PageRank.
    #[serde(rename = "zero-tprune")]
    ZeroTPrune,
    /// Weighted PageRank alone (Zero-TPrune without the similarity stage).
    Wpr,
    /// ToMe: merge the most similar tokens (bipartite soft matching) instead of dropping them.
    Tome,
    /// EViT: keep the tokens CLS attends to most.
    Evit,
    /// Drop tokens whose received attention is below a threshold; the count differs per image.
    Threshold,
    /// Seeded random drop: the baseline.
    Random,
}

impl Policy {
    /// Whether the policy's steps read the attention probabilities of their block (ToMe reads
    /// keys only, random nothing): the model writes them only for such blocks.
    pub fn reads_attention(&self) -> bool {
        matches!(
            self,
            Policy::ZeroTPrune | Policy::Wpr | Policy::Evit | Policy::Threshold
        )
    }

    pub const ALL: [Policy; 7] = [
        Policy::None,
        Policy::ZeroTPrune,
        Policy::Wpr,
        Policy::Tome,
        Policy::Evit,
        Policy::Threshold,
        Policy::Random,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::None => "none",
            Policy::ZeroTPrune => "zero-tprune",
            Policy::Wpr => "wpr",
            Policy::Tome => "tome",
            Policy::Evit => "evit",
            Policy::Threshold => "threshold",
            Policy::Random => "random",
        }
    }

    /// Blocks a schedule prunes at when none are given: every other block from block 2 to the
    /// second-to-last (2, 4, 6, 8, 10 for 12 blocks), which measured better for Zero-TPrune than
    /// EViT's 3, 6, 9 or every block (docs/pruning.md); every block for shallow models; every block
    /// for ToMe, which merges a little everywhere.
    pub fn default_blocks(self, depth: usize) -> Vec<usize> {
        if self == Policy::Tome || depth < 6 {
            return (0..depth).collect();
        }
        (2..depth - 1).step_by(2).collect()
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
        let s = s.trim().to_ascii_lowercase().replace('_', "-");
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == s || (s == "zerotprune" && *p == Policy::ZeroTPrune))
            .ok_or_else(|| {
                let names: Vec<_> = Policy::ALL.iter().map(|p| p.name()).collect();
                Error::param(
                    "policy",
                    format!("unknown policy '{s}'; expected one of {}", names.join(", ")),
                )
            })
    }
}

impl FromStr for HeadCombine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mean" => Ok(HeadCombine::Mean),
            "rms" => Ok(HeadCombine::Rms),
            "band" => Ok(HeadCombine::Band),
            other => Err(Error::param(
                "heads",
                format!("unknown head combination '{other}'; expected mean, rms or band"),
            )),
        }
    }
}

/// Options of the policies; each policy reads the ones it needs.
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
    /// PageRank iterations at every block, instead of the per-block default (see `wpr_iters`).
    pub iters: Option<u32>,
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
        }
    }
}

impl PruneOptions {
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
        if self.eps.is_nan() || self.eps < 0.0 {
            return Err(Error::param("eps", "must be >= 0"));
        }
        Ok(())
    }

    /// PageRank iterations at block `block` of a `depth`-block model: many early, one late
    /// (the published setting), unless `iters` overrides it.
    pub fn wpr_iters(&self, block: usize, depth: usize) -> u32 {
        if let Some(t) = self.iters {
            t
        } else if block < 3 {
            30
        } else if block + 3 >= depth {
            1
        } else {
            10
        }
    }
}
