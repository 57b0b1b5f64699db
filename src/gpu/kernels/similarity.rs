//! `similarity.wgsl`: ToMe's head-averaged keys; each source token's most similar destination by
//! cosine similarity (split by position parity, by a flag, or by roles); PiToMe's energy.

use super::{grid_for_groups, grid_for_items, u, TokenShape};
use crate::error::{Error, Result};
use crate::gpu::kernel::{read, read_u32, write, write_u32, Family, Kernel, Params};
use crate::gpu::{GpuTensor, Kernels, Phase, Step};

crate::wgsl_params! {
    pub struct MeanParams {
        /// batch * n * out_width
        total: u32,
        /// width / heads, rounded up to a multiple of 4.
        out_width: u32,
        n: u32,
        heads: u32,
        /// Key values per token, all heads.
        width: u32,
        off: u32,
        row_stride: u32,
        img_stride: u32,
    }
}

crate::wgsl_params! {
    pub struct MatchParams {
        batch: u32,
        n: u32,
        prefix: u32,
        /// 0: parity (sources at even patch positions, destinations odd); 1: flags (sources 0,
        /// destinations 1); 2: roles (1 source, 2 destination).
        mode: u32,
        /// 1: rows past each image's valid count (masked rows) are neither.
        masked: u32,
        /// Feature values per token.
        width: u32,
        off: u32,
        row_stride: u32,
        img_stride: u32,
        /// `spread_match`: destinations per source, and 1 / the softmax temperature.
        spread: u32,
        inv_tau: f32,
    }
}

crate::wgsl_params! {
    pub struct EnergyParams {
        batch: u32,
        n: u32,
        prefix: u32,
        width: u32,
        off: u32,
        row_stride: u32,
        img_stride: u32,
        margin: f32,
        alpha: f32,
    }
}

pub static SIMILARITY: Family = Family {
    name: "similarity",
    source: include_str!("../../../shaders/similarity.wgsl"),
    libs: &[],
    params: &[MeanParams::DECL, MatchParams::DECL, EnergyParams::DECL],
    kernels: &[
        &HEAD_MEAN.info,
        &BEST_MATCH.info,
        &SPREAD_MATCH.info,
        &ENERGY.info,
    ],
};

pub static HEAD_MEAN: Kernel<MeanParams> = Kernel::new(
    &SIMILARITY,
    "head_mean_keys",
    &[read("mk_keys"), write("mk_out")],
    Phase::Score,
);

pub static BEST_MATCH: Kernel<MatchParams> = Kernel::new(
    &SIMILARITY,
    "best_match",
    &[
        read("bm_feat"),
        read_u32("bm_flags"),
        read_u32("bm_counts"),
        write("bm_keep_score"),
        write_u32("bm_dst"),
    ],
    Phase::Score,
);

/// The most destinations `spread_match` gives a source (`MAX_SPREAD` in the shader).
pub const MAX_SPREAD: usize = 4;

pub static SPREAD_MATCH: Kernel<MatchParams> = Kernel::new(
    &SIMILARITY,
    "spread_match",
    &[
        read("bm_feat"),
        read_u32("bm_flags"),
        read_u32("bm_counts"),
        write("sm_weight"),
        write_u32("sm_dst"),
    ],
    Phase::Score,
);

/// Rows per workgroup of `energy` (`EN_TILE` in the shader).
const ENERGY_TILE: usize = 4;

pub static ENERGY: Kernel<EnergyParams> = Kernel::new(
    &SIMILARITY,
    "energy",
    &[read("bm_feat"), write("en_energy")],
    Phase::Score,
);

/// Which tokens a similarity match pairs up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchSplit {
    /// ToMe: sources at even patch positions, destinations at odd ones.
    Parity,
    /// Sources where the flag is 0, destinations where it is 1.
    Flags,
    /// The buffer gives each row's role: 1 source, 2 destination, anything else neither.
    Roles,
}

/// Token features (keys, or any per-token vectors): token `t` of image `b` starts at
/// `off + b * img_stride + t * row_stride` and has `width` values.
#[derive(Clone, Copy, Debug)]
pub struct Features<'a> {
    pub t: &'a GpuTensor,
    pub width: usize,
    pub off: usize,
    pub row_stride: usize,
    pub img_stride: usize,
}

impl<'a> Features<'a> {
    /// `width` rounded up to what the matching kernels read: a multiple of 4 values.
    pub fn vec4_width(width: usize) -> usize {
        width.div_ceil(4) * 4
    }

    /// Whether `best_match` and `energy` can read this view as vec4s.
    pub fn is_vec4(&self) -> bool {
        [self.width, self.off, self.row_stride, self.img_stride]
            .iter()
            .all(|v| v.is_multiple_of(4))
    }

    fn check_vec4(&self, kernel: &str) -> Result<()> {
        if self.is_vec4() {
            return Ok(());
        }
        Err(Error::param(
            "features",
            format!(
                "{kernel} reads features as vec4s: width {}, offset {}, strides {} and {} must be \
                 multiples of 4 (pack them with head_mean_keys)",
                self.width, self.off, self.row_stride, self.img_stride
            ),
        ))
    }

    /// `width` values per token, tokens and images packed: `[B, n, width]`.
    pub fn packed(t: &'a GpuTensor, n: usize, width: usize) -> Self {
        Features {
            t,
            width,
            off: 0,
            row_stride: width,
            img_stride: n * width,
        }
    }

    /// The keys of `[B, n, 3 * width]` qkv rows (queries, keys, values side by side): the middle
    /// third of every row.
    pub fn qkv_keys(qkv: &'a GpuTensor, n: usize, width: usize) -> Self {
        Features {
            t: qkv,
            width,
            off: width,
            row_stride: 3 * width,
            img_stride: n * 3 * width,
        }
    }
}

impl Kernels {
    /// ToMe's metric: the keys averaged over heads, `[B, n, w]` with `w` = `width / heads` rounded
    /// up to a multiple of 4 ([`Features::vec4_width`]), zeros past `width / heads`. With one head,
    /// a copy of any view into the layout `best_match` reads.
    pub fn head_mean_keys(
        &self,
        label: &str,
        s: TokenShape,
        keys: Features,
        out: &GpuTensor,
    ) -> Result<Step> {
        let out_width = Features::vec4_width(keys.width / s.heads.max(1));
        let total = s.batch * s.n * out_width;
        let params = MeanParams {
            total: u(total, "keys")?,
            out_width: u(out_width, "key width")?,
            n: s.n_u32()?,
            heads: s.heads_u32()?,
            width: u(keys.width, "key width")?,
            off: u(keys.off, "offset")?,
            row_stride: u(keys.row_stride, "stride")?,
            img_stride: u(keys.img_stride, "stride")?,
        };
        let grid = grid_for_items(total, 64);
        self.launch(&HEAD_MEAN, label, &[keys.t, out], &params, grid)
    }

    /// For every source token, its most similar destination (cosine): `keep_score = -best`
    /// (`3e38` for non-sources) and `dst` = the destination's row (`u32::MAX` for non-sources).
    /// `valid`: each image's valid rows (a masked batch); the rows past it are neither.
    #[allow(clippy::too_many_arguments)]
    pub fn best_match(
        &self,
        label: &str,
        s: TokenShape,
        feat: Features,
        split: MatchSplit,
        flags: Option<&GpuTensor>,
        valid: Option<&GpuTensor>,
        keep_score: &GpuTensor,
        dst: &GpuTensor,
    ) -> Result<Step> {
        s.check()?;
        feat.check_vec4("best_match")?;
        let params = MatchParams::new(s, feat, split, valid.is_some())?;
        let flags = flags.unwrap_or(&self.dummy);
        let counts = valid.unwrap_or(&self.dummy);
        // One workgroup per (image, row).
        let grid = grid_for_groups(s.batch * s.n);
        self.launch(
            &BEST_MATCH,
            label,
            &[feat.t, flags, counts, keep_score, dst],
            &params,
            grid,
        )
    }
}

impl MatchParams {
    fn new(s: TokenShape, feat: Features, split: MatchSplit, masked: bool) -> Result<Self> {
        Ok(MatchParams {
            batch: s.batch_u32()?,
            n: s.n_u32()?,
            prefix: u(s.prefix, "prefix")?,
            mode: match split {
                MatchSplit::Parity => 0,
                MatchSplit::Flags => 1,
                MatchSplit::Roles => 2,
            },
            masked: masked as u32,
            width: u(feat.width, "feature width")?,
            off: u(feat.off, "offset")?,
            row_stride: u(feat.row_stride, "stride")?,
            img_stride: u(feat.img_stride, "stride")?,
            spread: 1,
            inv_tau: 1.0,
        })
    }
}

impl Kernels {
    /// Token Transforming's spread: every source row's `k` most similar destinations (cosine;
    /// sources where `flags` is 0, destinations where it is 1, rows past `valid` neither) into
    /// `dst` `[B, n, k]`, and their shares `softmax(cos / tau)` into `weight` `[B, n, k]`;
    /// `u32::MAX` and 0 in the slots past the destinations an image has and on non-sources.
    #[allow(clippy::too_many_arguments)]
    pub fn spread_match(
        &self,
        label: &str,
        s: TokenShape,
        feat: Features,
        flags: &GpuTensor,
        valid: Option<&GpuTensor>,
        (k, tau): (usize, f32),
        weight: &GpuTensor,
        dst: &GpuTensor,
    ) -> Result<Step> {
        s.check()?;
        feat.check_vec4("spread_match")?;
        if !(1..=MAX_SPREAD).contains(&k) {
            return Err(Error::param(
                "spread",
                format!("spread_match gives 1 to {MAX_SPREAD} destinations per token, not {k}"),
            ));
        }
        if !(tau.is_finite() && tau > 0.0) {
            return Err(Error::param(
                "tau",
                format!("the spread's temperature must be a positive number, not {tau}"),
            ));
        }
        let params = MatchParams {
            spread: k as u32,
            inv_tau: 1.0 / tau,
            ..MatchParams::new(s, feat, MatchSplit::Flags, valid.is_some())?
        };
        let counts = valid.unwrap_or(&self.dummy);
        // One workgroup per (image, row).
        let grid = grid_for_groups(s.batch * s.n);
        self.launch(
            &SPREAD_MATCH,
            label,
            &[feat.t, flags, counts, weight, dst],
            &params,
            grid,
        )
    }
}

impl Kernels {
    /// PiToMe's energy of every patch token: the mean over the patch tokens of
    /// `elu(cos - margin, alpha)`; prefix rows get `-3e38`.
    pub fn energy(
        &self,
        label: &str,
        s: TokenShape,
        feat: Features,
        out: &GpuTensor,
        (margin, alpha): (f32, f32),
    ) -> Result<Step> {
        feat.check_vec4("energy")?;
        let params = EnergyParams {
            batch: s.batch_u32()?,
            n: s.n_u32()?,
            prefix: u(s.prefix, "prefix")?,
            width: u(feat.width, "feature width")?,
            off: u(feat.off, "offset")?,
            row_stride: u(feat.row_stride, "stride")?,
            img_stride: u(feat.img_stride, "stride")?,
            margin,
            alpha,
        };
        // One workgroup per (image, tile of rows).
        let grid = grid_for_groups(s.batch * s.n.div_ceil(ENERGY_TILE));
        self.launch(&ENERGY, label, &[feat.t, out], &params, grid)
    }
}
