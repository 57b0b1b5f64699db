//! `score.wgsl`: token scores from one block's attention probabilities `P[B, H, n, n]`
//! (received attention, CLS attention) and the seeded hash of the random baseline.

use super::{grid_for_items, TokenShape};
use crate::error::Result;
use crate::gpu::kernel::{read, read_u32, write, Family, Kernel, Params};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct ScoreParams {
        batch: u32,
        /// Rows per image.
        n: u32,
        heads: u32,
        /// 1: only the first counts[b] rows of image b are valid (masked rows).
        masked: u32,
        seed: u32,
        /// Index of this pruning step in the schedule (random).
        step: u32,
    }
}

pub static SCORE: Family = Family {
    name: "score",
    source: include_str!("../../../shaders/score.wgsl"),
    libs: &[],
    params: &[ScoreParams::DECL],
    kernels: &[&RECEIVED.info, &CLS.info, &RANDOM.info],
};

pub static RECEIVED: Kernel<ScoreParams> = Kernel::new(
    &SCORE,
    "received_attention",
    &[read("ra_probs"), read_u32("ra_counts"), write("ra_score")],
    Phase::Score,
);

pub static CLS: Kernel<ScoreParams> = Kernel::new(
    &SCORE,
    "cls_attention",
    &[read("ca_probs"), write("ca_score")],
    Phase::Score,
);

pub static RANDOM: Kernel<ScoreParams> = Kernel::new(
    &SCORE,
    "random_score",
    &[read_u32("rs_orig"), write("rs_score")],
    Phase::Score,
);

fn params(s: TokenShape, masked: bool, seed: u32, step: u32) -> Result<ScoreParams> {
    s.check()?;
    Ok(ScoreParams {
        batch: s.batch_u32()?,
        n: s.n_u32()?,
        heads: s.heads_u32()?,
        masked: masked as u32,
        seed,
        step,
    })
}

impl Kernels {
    /// `score[b, i]` = attention received by token `i`, averaged over heads and (valid) queries.
    pub fn received_attention(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        valid: Option<&GpuTensor>,
        score: &GpuTensor,
    ) -> Result<Step> {
        let p = params(s, valid.is_some(), 0, 0)?;
        let counts = valid.unwrap_or(&self.dummy);
        let grid = grid_for_items(s.batch * s.n, 64);
        self.launch(&RECEIVED, label, &[probs, counts, score], &p, grid)
    }

    /// `score[b, i]` = attention paid by CLS to token `i`, averaged over heads.
    pub fn cls_attention(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        score: &GpuTensor,
    ) -> Result<Step> {
        let p = params(s, false, 0, 0)?;
        let grid = grid_for_items(s.batch * s.n, 64);
        self.launch(&CLS, label, &[probs, score], &p, grid)
    }

    /// `score[b, i]` = a hash of (seed, step, b, original index of token i).
    pub fn random_score(
        &self,
        label: &str,
        s: TokenShape,
        orig: &GpuTensor,
        score: &GpuTensor,
        seed: u32,
        step: u32,
    ) -> Result<Step> {
        let p = params(s, false, seed, step)?;
        let grid = grid_for_items(s.batch * s.n, 64);
        self.launch(&RANDOM, label, &[orig, score], &p, grid)
    }
}
