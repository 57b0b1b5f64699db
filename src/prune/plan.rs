//! The GPU side of a pruning schedule: its buffers (allocated once per batch size) and the
//! [`TokenHook`] that appends each step's kernels at the patch point of its block.

use super::policy::{Policy, PruneOptions};
use super::schedule::{Keep, PruneStep, Pruning};
use super::{evit, random, threshold, tome, wpr, zero_tprune};
use crate::error::Result;
use crate::gpu::kernels::AttentionBias;
use crate::gpu::prune_kernels::TokenShape;
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::vit::{Activations, TokenHook};
use crate::model::ViTConfig;

/// Buffers of one pruning step.
pub struct StepBuffers {
    pub step: PruneStep,
    /// Rows per image before and after (prefix included).
    pub rows_in: usize,
    pub rows_out: usize,
    /// `[B, rows_out]`: input row of each output row (`u32::MAX` past the count).
    pub src: GpuTensor,
    /// `[B, rows_out]`: original token index of each output row (`u32::MAX` past the count).
    pub kept: GpuTensor,
    /// `[B]`: rows kept per image, prefix included.
    pub count: GpuTensor,
    /// `[B, rows_out]` ToMe token sizes.
    pub sizes: Option<GpuTensor>,
}

/// Scratch shared by the steps (they run one after another), sized for the full token count.
pub struct Scratch {
    /// `[B, N]` scores, "higher = keep".
    pub score: GpuTensor,
    /// `[B, N]` keep scores of a similarity match.
    pub match_score: GpuTensor,
    /// `[B, N]` each source's best destination row.
    pub match_dst: GpuTensor,
    /// `[B, N]` 0/1 flags: the selection of a step.
    pub flags: GpuTensor,
    /// `[B, N]` 0/1 flags: an intermediate split (important half, survivors of similarity).
    pub flags2: GpuTensor,
    /// `[B, H, N]` per-head PageRank scores.
    pub head_scores: GpuTensor,
    /// `[B, N, D / H]` ToMe's head-averaged keys.
    pub metric: GpuTensor,
    /// `[B, N]` all ones: "every row alive", and ToMe's initial sizes (as f32).
    pub ones_u32: GpuTensor,
    pub ones_f32: GpuTensor,
    /// `[B, N]` original token index of every row before the first step.
    pub identity: GpuTensor,
}

/// What a policy's step function gets: where the step is and which buffers to use.
pub struct StepCtx<'a> {
    pub k: &'a Kernels,
    pub a: &'a Activations,
    pub c: &'a ViTConfig,
    pub options: &'a PruneOptions,
    /// Index of the step in the schedule.
    pub index: usize,
    pub shape: TokenShape,
    pub scratch: &'a Scratch,
    pub out: &'a StepBuffers,
    /// Original token index of every input row.
    pub orig_in: &'a GpuTensor,
    /// Valid rows per image when an earlier threshold step left masked rows.
    pub valid_in: Option<&'a GpuTensor>,
    /// Token sizes of the input rows (ToMe).
    pub sizes_in: &'a GpuTensor,
}

impl StepCtx<'_> {
    pub fn label(&self, what: &str) -> String {
        format!("block{}.prune.{what}", self.out.step.block)
    }

    /// Rows kept by a top-k step, prefix included.
    pub fn rows_out(&self) -> usize {
        self.out.rows_out
    }

    /// Flag the `rows_out` best rows of `scratch.score` in `scratch.flags` (prefix rows always).
    pub fn select_top(&self, p: &mut Program) -> Result<()> {
        let s = self.scratch;
        p.push(self.k.select_topk(
            &self.label("topk"),
            self.shape,
            &s.score,
            &s.flags,
            self.rows_out(),
        )?);
        Ok(())
    }

    /// Stable compaction of the rows flagged in `scratch.flags`: source rows, original indices, counts.
    pub fn compact(&self, p: &mut Program) -> Result<()> {
        let o = self.out;
        p.push(self.k.compact(
            &self.label("compact"),
            self.a.batch,
            (o.rows_in, o.rows_out),
            &self.scratch.flags,
            self.orig_in,
            &o.src,
            &o.kept,
            &o.count,
        )?);
        Ok(())
    }

    /// Compact the flagged rows of `x`, carrying original indices, then write them back.
    pub fn compact_and_gather(&self, p: &mut Program) -> Result<()> {
        let (a, o) = (self.a, self.out);
        self.compact(p)?;
        p.push(self.k.gather_rows(
            &self.label("gather"),
            a.batch,
            (o.rows_in, o.rows_out, self.c.embed_dim),
            &a.x,
            &o.src,
            &a.attn,
        )?);
        self.copy_back(p)
    }

    /// The compacted rows were written to the free attention-output buffer; copy them into `x`.
    pub fn copy_back(&self, p: &mut Program) -> Result<()> {
        let len = self.a.batch * self.out.rows_out * self.c.embed_dim;
        p.push(
            self.k
                .copy(&self.label("copy"), &self.a.attn, &self.a.x, len)?,
        );
        Ok(())
    }
}

/// A pruning schedule on the GPU for one batch size.
pub struct PrunePlan {
    pub config: ViTConfig,
    pub pruning: Pruning,
    pub scratch: Scratch,
    pub steps: Vec<StepBuffers>,
}

impl PrunePlan {
    pub fn new(gpu: &GpuContext, c: &ViTConfig, pruning: &Pruning, batch: usize) -> Self {
        let (n, prefix) = (c.num_tokens(), c.num_prefix_tokens());
        let bn = batch * n;
        let z = |label: &str, len: usize| GpuTensor::zeros(gpu, label, len);
        let identity: Vec<u32> = (0..bn).map(|i| (i % n) as u32).collect();
        let scratch = Scratch {
            score: z("prune score", bn),
            match_score: z("prune match score", bn),
            match_dst: z("prune match destination", bn),
            flags: z("prune flags", bn),
            flags2: z("prune flags 2", bn),
            head_scores: z("prune head scores", bn * c.num_heads),
            metric: z("prune metric", bn * c.head_dim()),
            ones_u32: GpuTensor::from_slice(gpu, "ones", &vec![1u32; bn]),
            ones_f32: GpuTensor::from_slice(gpu, "sizes", &vec![1f32; bn]),
            identity: GpuTensor::from_slice(gpu, "token index", &identity),
        };
        let steps = pruning
            .steps
            .iter()
            .map(|step| {
                let rows_out = prefix + step.tokens_out();
                StepBuffers {
                    step: *step,
                    rows_in: prefix + step.tokens_in,
                    rows_out,
                    src: z("prune source rows", batch * rows_out),
                    kept: z("prune kept tokens", batch * rows_out),
                    count: z("prune counts", batch),
                    sizes: (pruning.policy == Policy::Tome)
                        .then(|| z("token sizes", batch * rows_out)),
                }
            })
            .collect();
        PrunePlan {
            config: c.clone(),
            pruning: pruning.clone(),
            scratch,
            steps,
        }
    }

    /// The last step before block `block`, if any.
    fn previous(&self, block: usize) -> Option<&StepBuffers> {
        self.steps.iter().rev().find(|s| s.step.block < block)
    }
}

impl TokenHook for PrunePlan {
    fn attention_bias(&self, block: usize) -> AttentionBias<'_> {
        let prev = self.previous(block);
        AttentionBias {
            log_size: prev.and_then(|s| s.sizes.as_ref()),
            valid: prev
                .filter(|s| matches!(s.step.keep, Keep::Threshold(_)))
                .map(|s| &s.count),
        }
    }

    fn needs_attention_probs(&self, block: usize) -> bool {
        self.steps.iter().any(|s| s.step.block == block) && self.pruning.policy.reads_attention()
    }

    fn after_attention(
        &mut self,
        k: &Kernels,
        p: &mut Program,
        a: &Activations,
        block: usize,
        tokens: usize,
    ) -> Result<usize> {
        let Some(index) = self.steps.iter().position(|s| s.step.block == block) else {
            return Ok(tokens);
        };
        let c = &self.config;
        let prev = index.checked_sub(1).map(|i| &self.steps[i]);
        let out = &self.steps[index];
        debug_assert_eq!(out.rows_in, tokens);
        let ctx = StepCtx {
            k,
            a,
            c,
            options: &self.pruning.options,
            index,
            shape: TokenShape {
                batch: a.batch,
                n: tokens,
                heads: c.num_heads,
                prefix: c.num_prefix_tokens(),
            },
            scratch: &self.scratch,
            out,
            orig_in: prev.map_or(&self.scratch.identity, |s| &s.kept),
            valid_in: prev
                .filter(|s| matches!(s.step.keep, Keep::Threshold(_)))
                .map(|s| &s.count),
            sizes_in: prev
                .and_then(|s| s.sizes.as_ref())
                .unwrap_or(&self.scratch.ones_f32),
        };
        match self.pruning.policy {
            Policy::None => return Ok(tokens),
            Policy::ZeroTPrune => zero_tprune::step(&ctx, p)?,
            Policy::Wpr => wpr::step(&ctx, p)?,
            Policy::Tome => tome::step(&ctx, p)?,
            Policy::Evit => evit::step(&ctx, p)?,
            Policy::Threshold => threshold::step(&ctx, p)?,
            Policy::Random => random::step(&ctx, p)?,
        }
        Ok(out.rows_out)
    }
}
