//! Launchers of the token-pruning kernels (score, pagerank, similarity, select, compact, merge).
//! Like the model's launchers they only describe a step; `src/prune` decides which run and when.

use bytemuck::{Pod, Zeroable};

use super::kernels::{grid_for_groups, grid_for_items, u};
use super::{GpuTensor, Kernels, Step};
use crate::error::{Error, Result};

/// The most rows per image the one-workgroup kernels (sort, scan, PageRank) handle.
pub const MAX_PRUNE_TOKENS: usize = 1024;

/// Shapes shared by the per-token kernels.
#[derive(Clone, Copy, Debug)]
pub struct TokenShape {
    pub batch: usize,
    /// Rows per image.
    pub n: usize,
    pub heads: usize,
    /// Prefix rows (CLS, distillation), never pruned.
    pub prefix: usize,
}

impl TokenShape {
    fn check(&self) -> Result<()> {
        if self.n > MAX_PRUNE_TOKENS {
            return Err(Error::param(
                "tokens",
                format!(
                    "token pruning supports at most {MAX_PRUNE_TOKENS} tokens per image, the model has {}",
                    self.n
                ),
            ));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ScoreParams {
    batch: u32,
    n: u32,
    heads: u32,
    masked: u32,
    seed: u32,
    step: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct WprParams {
    n: u32,
    heads: u32,
    iters: u32,
    eps: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CombineParams {
    n: u32,
    heads: u32,
    prefix: u32,
    mode: u32,
    lo: f32,
    hi: f32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MeanParams {
    total: u32,
    n: u32,
    dim: u32,
    heads: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatchParams {
    batch: u32,
    n: u32,
    prefix: u32,
    mode: u32,
    width: u32,
    off: u32,
    row_stride: u32,
    img_stride: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TopkParams {
    n: u32,
    prefix: u32,
    keep: u32,
    m: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ThresholdParams {
    n: u32,
    prefix: u32,
    masked: u32,
    theta: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CompactParams {
    n_in: u32,
    n_out: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GatherParams {
    total: u32,
    n_in: u32,
    n_out: u32,
    d: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MergeParams {
    total: u32,
    n_in: u32,
    n_out: u32,
    d: u32,
    prefix: u32,
    _pad: [u32; 3],
}

/// How the per-head PageRank scores become one score per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadCombine {
    Mean,
    Rms,
    /// RMS over the heads whose variance of `|S| * s` (patch tokens) lies in the band.
    #[default]
    Band,
}

/// Which tokens a similarity match pairs up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchSplit {
    /// ToMe: sources at even patch positions, destinations at odd ones.
    Parity,
    /// Zero-TPrune: sources where the flag is 0, destinations where it is 1.
    Flags,
}

/// Token features for a similarity match: token `t` of image `b` starts at
/// `off + b * img_stride + t * row_stride` and has `width` values.
#[derive(Clone, Copy, Debug)]
pub struct Features<'a> {
    pub t: &'a GpuTensor,
    pub width: usize,
    pub off: usize,
    pub row_stride: usize,
    pub img_stride: usize,
}

impl Kernels {
    fn score_params(s: TokenShape, masked: bool, seed: u32, step: u32) -> Result<ScoreParams> {
        s.check()?;
        Ok(ScoreParams {
            batch: u(s.batch, "batch")?,
            n: u(s.n, "tokens")?,
            heads: u(s.heads, "heads")?,
            masked: masked as u32,
            seed,
            step,
            _pad: [0; 2],
        })
    }

    /// `score[b, i]` = attention received by token `i`, averaged over heads and (valid) queries.
    pub fn received_attention(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        valid: Option<&GpuTensor>,
        score: &GpuTensor,
    ) -> Result<Step> {
        let params = Self::score_params(s, valid.is_some(), 0, 0)?;
        let pipeline = self.pipeline("score", "received_attention", &[])?;
        let counts = valid.unwrap_or(&self.dummy);
        Ok(self.step(
            label,
            pipeline,
            &[probs, counts, score],
            &params,
            grid_for_items(s.batch * s.n, 64),
        ))
    }

    /// `score[b, i]` = attention paid by CLS to token `i`, averaged over heads.
    pub fn cls_attention(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        score: &GpuTensor,
    ) -> Result<Step> {
        let params = Self::score_params(s, false, 0, 0)?;
        let pipeline = self.pipeline("score", "cls_attention", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[probs, score],
            &params,
            grid_for_items(s.batch * s.n, 64),
        ))
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
        let params = Self::score_params(s, false, seed, step)?;
        let pipeline = self.pipeline("score", "random_score", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[orig, score],
            &params,
            grid_for_items(s.batch * s.n, 64),
        ))
    }

    /// Weighted PageRank per (image, head) on the rows flagged alive: `heads_out[b, h, i]`.
    #[allow(clippy::too_many_arguments)]
    pub fn wpr(
        &self,
        label: &str,
        s: TokenShape,
        probs: &GpuTensor,
        alive: &GpuTensor,
        heads_out: &GpuTensor,
        iters: u32,
        eps: f32,
    ) -> Result<Step> {
        s.check()?;
        let params = WprParams {
            n: u(s.n, "tokens")?,
            heads: u(s.heads, "heads")?,
            iters,
            eps,
        };
        let pipeline = self.pipeline("pagerank", "wpr", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[probs, alive, heads_out],
            &params,
            grid_for_groups(s.batch * s.heads),
        ))
    }

    /// One score per alive token from the per-head scores; `-3e38` for the others.
    #[allow(clippy::too_many_arguments)]
    pub fn combine_heads(
        &self,
        label: &str,
        s: TokenShape,
        heads_in: &GpuTensor,
        alive: &GpuTensor,
        score: &GpuTensor,
        how: HeadCombine,
        band: (f32, f32),
    ) -> Result<Step> {
        if s.heads > 64 {
            return Err(Error::param(
                "heads",
                "head combining supports at most 64 heads",
            ));
        }
        let params = CombineParams {
            n: u(s.n, "tokens")?,
            heads: u(s.heads, "heads")?,
            prefix: u(s.prefix, "prefix")?,
            mode: match how {
                HeadCombine::Mean => 0,
                HeadCombine::Rms => 1,
                HeadCombine::Band => 2,
            },
            lo: band.0,
            hi: band.1,
            _pad: [0; 2],
        };
        let pipeline = self.pipeline("pagerank", "combine_heads", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[heads_in, alive, score],
            &params,
            grid_for_groups(s.batch),
        ))
    }

    /// ToMe's metric: keys averaged over heads, `[B, n, D / heads]`, from the `[B, n, 3D]` QKV rows.
    pub fn head_mean_keys(
        &self,
        label: &str,
        s: TokenShape,
        dim: usize,
        qkv: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<Step> {
        let total = s.batch * s.n * (dim / s.heads.max(1));
        let params = MeanParams {
            total: u(total, "keys")?,
            n: u(s.n, "tokens")?,
            dim: u(dim, "dim")?,
            heads: u(s.heads, "heads")?,
        };
        let pipeline = self.pipeline("similarity", "head_mean_keys", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[qkv, out],
            &params,
            grid_for_items(total, 64),
        ))
    }

    /// For every source token, its most similar destination (cosine): `keep_score = -best`
    /// (`3e38` for non-sources) and `dst` = the destination's row.
    #[allow(clippy::too_many_arguments)]
    pub fn best_match(
        &self,
        label: &str,
        s: TokenShape,
        feat: Features,
        split: MatchSplit,
        flags: Option<&GpuTensor>,
        keep_score: &GpuTensor,
        dst: &GpuTensor,
    ) -> Result<Step> {
        s.check()?;
        let params = MatchParams {
            batch: u(s.batch, "batch")?,
            n: u(s.n, "tokens")?,
            prefix: u(s.prefix, "prefix")?,
            mode: (split == MatchSplit::Flags) as u32,
            width: u(feat.width, "feature width")?,
            off: u(feat.off, "offset")?,
            row_stride: u(feat.row_stride, "stride")?,
            img_stride: u(feat.img_stride, "stride")?,
        };
        let pipeline = self.pipeline("similarity", "best_match", &[])?;
        let flags = flags.unwrap_or(&self.dummy);
        Ok(self.step(
            label,
            pipeline,
            &[feat.t, flags, keep_score, dst],
            &params,
            grid_for_items(s.batch * s.n, 64),
        ))
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
            n: u(s.n, "tokens")?,
            prefix: u(s.prefix, "prefix")?,
            keep: u(keep, "keep")?,
            m: u(s.n.next_power_of_two().max(2), "tokens")?,
        };
        let pipeline = self.pipeline("select", "select_topk", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[score, flags],
            &params,
            grid_for_groups(s.batch),
        ))
    }

    /// `flags[b, i] = 1` where `valid * score >= theta` (or the best row if none passes); prefix always.
    pub fn select_threshold(
        &self,
        label: &str,
        s: TokenShape,
        score: &GpuTensor,
        valid: Option<&GpuTensor>,
        flags: &GpuTensor,
        theta: f32,
    ) -> Result<Step> {
        s.check()?;
        let params = ThresholdParams {
            n: u(s.n, "tokens")?,
            prefix: u(s.prefix, "prefix")?,
            masked: valid.is_some() as u32,
            theta,
        };
        let pipeline = self.pipeline("select", "select_threshold", &[])?;
        let counts = valid.unwrap_or(&self.dummy);
        Ok(self.step(
            label,
            pipeline,
            &[score, counts, flags],
            &params,
            grid_for_groups(s.batch),
        ))
    }

    /// Stable compaction of flagged rows: `src[b, r]` (input row), `orig_out[b, r]` (carried from
    /// `orig_in`), `count[b]`; slots past the count hold `u32::MAX`.
    #[allow(clippy::too_many_arguments)]
    pub fn compact(
        &self,
        label: &str,
        batch: usize,
        (n_in, n_out): (usize, usize),
        flags: &GpuTensor,
        orig_in: &GpuTensor,
        src: &GpuTensor,
        orig_out: &GpuTensor,
        count: &GpuTensor,
    ) -> Result<Step> {
        if n_in > MAX_PRUNE_TOKENS {
            return Err(Error::param(
                "tokens",
                "compaction supports at most 1024 rows",
            ));
        }
        let params = CompactParams {
            n_in: u(n_in, "tokens")?,
            n_out: u(n_out, "tokens")?,
            _pad: [0; 2],
        };
        let pipeline = self.pipeline("compact", "compact", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[flags, orig_in, src, orig_out, count],
            &params,
            grid_for_groups(batch),
        ))
    }

    /// `out[b, r, :] = x[b, src[b, r], :]` (zero where `src` is `u32::MAX`).
    pub fn gather_rows(
        &self,
        label: &str,
        batch: usize,
        (n_in, n_out, d): (usize, usize, usize),
        x: &GpuTensor,
        src: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<Step> {
        let total = batch * n_out * d;
        let params = GatherParams {
            total: u(total, "rows")?,
            n_in: u(n_in, "tokens")?,
            n_out: u(n_out, "tokens")?,
            d: u(d, "dim")?,
        };
        let pipeline = self.pipeline("compact", "gather_rows", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[x, src, out],
            &params,
            grid_for_items(total, 256),
        ))
    }

    /// `dst[0..len) = src[0..len)`.
    pub fn copy(&self, label: &str, src: &GpuTensor, dst: &GpuTensor, len: usize) -> Result<Step> {
        let params = GatherParams {
            total: u(len, "copy length")?,
            n_in: 0,
            n_out: 0,
            d: 0,
        };
        let pipeline = self.pipeline("compact", "copy", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[src, dst],
            &params,
            grid_for_items(len, 256),
        ))
    }

    /// ToMe's size-weighted merge into the surviving rows, and their new sizes.
    #[allow(clippy::too_many_arguments)]
    pub fn tome_merge(
        &self,
        label: &str,
        s: TokenShape,
        (n_out, d): (usize, usize),
        x: &GpuTensor,
        src: &GpuTensor,
        flags: &GpuTensor,
        dst: &GpuTensor,
        (size_in, size_out): (&GpuTensor, &GpuTensor),
        out: &GpuTensor,
    ) -> Result<Step> {
        let total = s.batch * n_out * d;
        let params = MergeParams {
            total: u(total, "rows")?,
            n_in: u(s.n, "tokens")?,
            n_out: u(n_out, "tokens")?,
            d: u(d, "dim")?,
            prefix: u(s.prefix, "prefix")?,
            _pad: [0; 3],
        };
        let pipeline = self.pipeline("merge", "tome_merge", &[])?;
        Ok(self.step(
            label,
            pipeline,
            &[x, src, flags, dst, size_in, out, size_out],
            &params,
            grid_for_items(total, 256),
        ))
    }
}
