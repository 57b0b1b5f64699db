//! `select.wgsl`: which rows of each image survive, as 0/1 flags in row order (prefix rows always):
//! the top k by score (a one-workgroup bitonic sort), or a threshold on received attention; and
//! merge roles from a ranking (PiToMe's pairs, protected ToMe).

use super::{grid_for_groups, u, TokenShape};
use crate::error::Result;
use crate::gpu::kernel::{read, read_u32, write_u32, Family, Kernel, Params, SORT};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct TopkParams {
        n: u32,
        prefix: u32,
        /// Rows kept, prefix included.
        keep: u32,
        /// n rounded up to a power of two.
        m: u32,
    }
}

crate::wgsl_params! {
    pub struct ReceivedTopkParams {
        n: u32,
        prefix: u32,
        /// Rows kept, prefix included.
        keep: u32,
        /// n rounded up to a power of two.
        m: u32,
        heads: u32,
        masked: u32,
        /// 1: keep the prefix and half the valid patch rows, rounded up (`keep` unused).
        half: u32,
    }
}

crate::wgsl_params! {
    pub struct ThresholdParams {
        n: u32,
        prefix: u32,
        masked: u32,
        /// 1: compare the score times the valid rows; 0: the score itself.
        per_count: u32,
        theta: f32,
    }
}

crate::wgsl_params! {
    pub struct RolesParams {
        n: u32,
        prefix: u32,
        /// Merge pairs (mode 0) or protected rows (mode 1).
        count: u32,
        /// n rounded up to a power of two.
        m: u32,
        mode: u32,
    }
}

pub static SELECT: Family = Family {
    name: "select",
    source: include_str!("../../../shaders/select.wgsl"),
    libs: &[SORT],
    params: &[
        TopkParams::DECL,
        ReceivedTopkParams::DECL,
        ThresholdParams::DECL,
        RolesParams::DECL,
    ],
    kernels: &[
        &TOPK.info,
        &RECEIVED_TOPK.info,
        &THRESHOLD.info,
        &ROLES.info,
    ],
};

pub static RECEIVED_TOPK: Kernel<ReceivedTopkParams> = Kernel::new(
    &SELECT,
    "received_topk",
    &[
        read("rt_probs"),
        read_u32("rt_counts"),
        write_u32("rt_flags"),
    ],
    Phase::Select,
);

pub static TOPK: Kernel<TopkParams> = Kernel::new(
    &SELECT,
    "select_topk",
    &[read("tk_score"), write_u32("tk_flags")],
    Phase::Select,
);

pub static THRESHOLD: Kernel<ThresholdParams> = Kernel::new(
    &SELECT,
    "select_threshold",
    &[
        read("th_score"),
        read_u32("th_counts"),
        write_u32("th_flags"),
    ],
    Phase::Select,
);

pub static ROLES: Kernel<RolesParams> = Kernel::new(
    &SELECT,
    "split_roles",
    &[read("rl_score"), write_u32("rl_roles")],
    Phase::Select,
);

/// How many rows [`Kernels::received_topk`] keeps per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopCount {
    /// Exactly this many, prefix included.
    Rows(usize),
    /// The prefix and half the image's valid patch rows, rounded up: Zero-TPrune's important
    /// half, which differs per image in a masked batch.
    HalfOfPatches,
}

/// What [`Kernels::select_threshold`] compares with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdOn {
    /// The score times the image's valid rows: received attention, scaled so that uniform is 1.
    TimesCount,
    /// The score as it is.
    Score,
}

/// How [`Kernels::split_roles`] turns a ranking into merge roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleSplit {
    /// PiToMe: the `count * 2` best-ranked patch rows alternate source, destination, ...; the
    /// others are protected.
    RankPairs,
    /// ToMe's parity split, except that the `count` best-ranked patch rows are never sources.
    ParityProtect,
}

impl Kernels {
    /// A merge role for every row from a ranking by (score desc, row asc): 1 source,
    /// 2 destination, 0 neither (prefix rows: 0).
    pub fn split_roles(
        &self,
        label: &str,
        s: TokenShape,
        score: &GpuTensor,
        roles: &GpuTensor,
        split: RoleSplit,
        count: usize,
    ) -> Result<Step> {
        s.check()?;
        let params = RolesParams {
            n: s.n_u32()?,
            prefix: u(s.prefix, "prefix")?,
            count: u(count, "count")?,
            m: u(s.n.next_power_of_two().max(2), "tokens")?,
            mode: match split {
                RoleSplit::RankPairs => 0,
                RoleSplit::ParityProtect => 1,
            },
        };
        let grid = grid_for_groups(s.batch);
        self.launch(&ROLES, label, &[score, roles], &params, grid)
    }

    /// [`Kernels::received_attention`] then [`Kernels::select_topk`] on it, in one dispatch: the
    /// rows of each image that receive the most attention, `count` of them (prefix rows always).
    /// `valid`: each image's valid rows (a masked batch), which alone are summed and kept.
    pub fn received_topk(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        valid: Option<&GpuTensor>,
        flags: &GpuTensor,
        count: TopCount,
    ) -> Result<Step> {
        s.check()?;
        let (keep, half) = match count {
            TopCount::Rows(k) => (k, 0),
            TopCount::HalfOfPatches => (0, 1),
        };
        let params = ReceivedTopkParams {
            n: s.n_u32()?,
            prefix: u(s.prefix, "prefix")?,
            keep: u(keep, "keep")?,
            m: u(s.n.next_power_of_two().max(2), "tokens")?,
            heads: s.heads_u32()?,
            masked: valid.is_some() as u32,
            half,
        };
        let counts = valid.unwrap_or(&self.dummy);
        let grid = grid_for_groups(s.batch);
        self.launch(
            &RECEIVED_TOPK,
            label,
            &[probs, counts, flags],
            &params,
            grid,
        )
    }

    /// `flags[b, i] = 1` for the `keep` best rows by (score desc, row asc); prefix rows always.
    pub fn select_topk(
        &self,
        label: &str,
        s: TokenShape,
        score: &GpuTensor,
        flags: &GpuTensor,
        keep: usize,
    ) -> Result<Step> {
        s.check()?;
        let params = TopkParams {
            n: s.n_u32()?,
            prefix: u(s.prefix, "prefix")?,
            keep: u(keep, "keep")?,
            m: u(s.n.next_power_of_two().max(2), "tokens")?,
        };
        let grid = grid_for_groups(s.batch);
        self.launch(&TOPK, label, &[score, flags], &params, grid)
    }

    /// `flags[b, i] = 1` where `valid * score >= theta` ([`ThresholdOn::TimesCount`]) or
    /// `score >= theta` (or the best row if none passes); prefix always, rows past `valid` never.
    #[allow(clippy::too_many_arguments)]
    pub fn select_threshold(
        &self,
        label: &str,
        s: TokenShape,
        score: &GpuTensor,
        valid: Option<&GpuTensor>,
        flags: &GpuTensor,
        on: ThresholdOn,
        theta: f32,
    ) -> Result<Step> {
        s.check()?;
        let params = ThresholdParams {
            n: s.n_u32()?,
            prefix: u(s.prefix, "prefix")?,
            masked: valid.is_some() as u32,
            per_count: (on == ThresholdOn::TimesCount) as u32,
            theta,
        };
        let counts = valid.unwrap_or(&self.dummy);
        let grid = grid_for_groups(s.batch);
        self.launch(&THRESHOLD, label, &[score, counts, flags], &params, grid)
    }
}
