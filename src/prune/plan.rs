//! The GPU side of a pruning schedule: its buffers (allocated once per batch size) and the
//! [`TokenHook`] that runs each step at the pruning point of its block: the policy scores and
//! selects; the code here carries the selection out (compaction, then a gather or a merge).

use super::point::{PrunePoint, Selection, Target, Workspace};
use super::policy::KeepRule;
use super::schedule::{Keep, PruneStep, Pruning};
use crate::error::{Error, Result};
use crate::gpu::kernels::{AttentionBias, TokenShape};
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::hook::{MaskedRows, TokenHook, TokenState};

/// The token rows a model starts its blocks with.
#[derive(Clone, Copy, Debug)]
pub struct TokenLayout {
    pub batch: usize,
    /// Rows per item before the first step.
    pub rows: usize,
    /// Leading rows never pruned.
    pub protected: usize,
    pub heads: usize,
    pub depth: usize,
    /// Values per row.
    pub width: usize,
}

impl TokenLayout {
    /// `batch` items of `rows` rows of a model of geometry `g`.
    pub fn new(g: &crate::model::TokenGeometry, batch: usize, rows: usize) -> Self {
        TokenLayout {
            batch,
            rows,
            protected: g.protected,
            heads: g.heads,
            depth: g.depth,
            width: g.width,
        }
    }
}

/// Buffers of one pruning step.
pub struct StepBuffers {
    pub step: PruneStep,
    /// Rows per image before and after (protected rows included).
    pub rows_in: usize,
    pub rows_out: usize,
    /// `[B, rows_out]`: input row of each output row (`u32::MAX` past the count).
    pub src: GpuTensor,
    /// `[B, rows_out]`: original token index of each output row (`u32::MAX` past the count).
    pub kept: GpuTensor,
    /// `[B]`: rows kept per image, protected rows included.
    pub count: GpuTensor,
    /// `[B, rows_out]` token sizes, for merging policies.
    pub sizes: Option<GpuTensor>,
    /// For a step that masks rows (threshold pruning): its counts and the packed map of the live
    /// rows, which later row-wise kernels run over.
    pub masked: Option<MaskedRows>,
    /// `[B, rows_in, width]`: the states at the pruning point, copied before the step, where the
    /// plan records them (a dropping step of a model that mean-pools: its dropped tokens leave the
    /// model with these states).
    pub exits: Option<GpuTensor>,
    /// `[B, rows_out, width]`: where the step left the surviving rows (set when its steps are
    /// built): the block's MLP reads them, and its last GEMM writes them back with its output.
    pub compacted: Option<GpuTensor>,
}

/// A pruning schedule on the GPU for one batch size.
pub struct PrunePlan {
    pub pruning: Pruning,
    pub layout: TokenLayout,
    pub steps: Vec<StepBuffers>,
    work: Workspace,
    /// `[B, rows]` original token index of every row before the first step.
    identity: GpuTensor,
}

impl PrunePlan {
    /// The buffers of `pruning` for `layout`; with `record_exits`, every step of a dropping policy
    /// keeps the states its dropped tokens leave with ([`StepBuffers::exits`]).
    pub fn new(
        gpu: &GpuContext,
        layout: TokenLayout,
        pruning: &Pruning,
        record_exits: bool,
    ) -> Self {
        let (batch, n) = (layout.batch, layout.rows);
        let z = |label: &str, len: usize| GpuTensor::zeros(gpu, label, len);
        let identity: Vec<u32> = (0..batch * n).map(|i| (i % n) as u32).collect();
        let merges = pruning.policy.def().merges();
        let exits = record_exits && !merges;
        let steps = pruning
            .steps
            .iter()
            .map(|step| {
                let rows_out = layout.protected + step.tokens_out();
                let rows_in = layout.protected + step.tokens_in;
                let count = z("prune counts", batch);
                StepBuffers {
                    step: *step,
                    rows_in,
                    rows_out,
                    src: z("prune source rows", batch * rows_out),
                    kept: z("prune kept tokens", batch * rows_out),
                    sizes: merges.then(|| z("token sizes", batch * rows_out)),
                    masked: matches!(step.keep, Keep::Threshold(_)).then(|| MaskedRows {
                        counts: count.clone(),
                        map: z("live rows", 1 + batch * rows_out),
                    }),
                    exits: exits.then(|| z("exit states", batch * rows_in * layout.width)),
                    compacted: None,
                    count,
                }
            })
            .collect();
        PrunePlan {
            pruning: pruning.clone(),
            layout,
            steps,
            work: Workspace::new(gpu, batch, n),
            identity: GpuTensor::from_slice(gpu, "token index", &identity),
        }
    }

    /// The last step before block `block`, if any.
    fn previous(&self, block: usize) -> Option<&StepBuffers> {
        self.steps.iter().rev().find(|s| s.step.block < block)
    }

    /// The valid-row counts a masked (threshold) step left, which later blocks respect.
    fn masked_counts(step: &StepBuffers) -> Option<&GpuTensor> {
        step.masked.as_ref().map(|m| &m.counts)
    }

    /// Carry out `selection`: compact the surviving rows (original indices and counts along), then
    /// gather them, or merge the others into them, into the step's compacted rows, which it
    /// returns. Nothing copies them back into the token rows: the block's last GEMM writes them
    /// there with its output ([`TokenHook::compacted_rows`]).
    fn apply(
        &self,
        k: &Kernels,
        p: &mut Program,
        at: &PrunePoint,
        out: &StepBuffers,
        selection: Selection,
    ) -> Result<GpuTensor> {
        let (batch, width) = (at.shape.batch, at.keys.width);
        let flags = selection.flags();
        let targets = selection.merge_targets();
        // The survivors go to the step's compacted rows (a gather in place would race); a kept
        // selection compacts and gathers in one dispatch where the rows are vec4s.
        let rows = self.work.per_row("compacted rows", width);
        let fused = targets.is_none() && width.is_multiple_of(4);
        if fused {
            p.push(k.compact_gather(
                &at.label("compact_gather"),
                batch,
                (out.rows_in, out.rows_out, width),
                (flags, at.orig),
                (&out.src, &out.kept, &out.count),
                (at.tokens, &rows),
            )?);
        } else {
            p.push(k.compact(
                &at.label("compact"),
                batch,
                (out.rows_in, out.rows_out),
                flags,
                at.orig,
                &out.src,
                &out.kept,
                &out.count,
            )?);
        }
        match targets {
            None => {
                if !fused {
                    p.push(k.gather_rows(
                        &at.label("gather"),
                        batch,
                        (out.rows_in, out.rows_out, width),
                        at.tokens,
                        &out.src,
                        &rows,
                    )?);
                }
                if let Some(sizes) = &out.sizes {
                    p.push(k.gather_rows(
                        &at.label("gather_sizes"),
                        batch,
                        (out.rows_in, out.rows_out, 1),
                        at.sizes,
                        &out.src,
                        sizes,
                    )?);
                }
            }
            Some(targets) => {
                let sizes = out.sizes.as_ref().ok_or_else(|| {
                    Error::Gpu(format!(
                        "policy {} merges but does not declare it (PolicyDef::merges)",
                        self.pruning.policy
                    ))
                })?;
                p.push(k.merge_rows(
                    &at.label("merge"),
                    at.shape,
                    (out.rows_out, width),
                    at.tokens,
                    &out.src,
                    flags,
                    targets,
                    (at.sizes, sizes),
                    &rows,
                )?);
            }
        }
        if let Some(masked) = &out.masked {
            p.push(k.live_row_map(
                &at.label("live_rows"),
                (batch, out.rows_out),
                &masked.counts,
                &masked.map,
            )?);
        }
        Ok(rows)
    }
}

impl TokenHook for PrunePlan {
    fn attention_bias(&self, block: usize) -> AttentionBias<'_> {
        let prev = self.previous(block);
        AttentionBias {
            log_size: prev.and_then(|s| s.sizes.as_ref()),
            valid: prev.and_then(Self::masked_counts),
        }
    }

    fn compacted_rows(&self, block: usize) -> Option<&GpuTensor> {
        self.steps
            .iter()
            .find(|s| s.step.block == block)
            .and_then(|s| s.compacted.as_ref())
    }

    fn live_rows(&self, block: usize) -> Option<&MaskedRows> {
        let last = self.steps.iter().rev().find(|s| s.step.block <= block)?;
        last.masked.as_ref()
    }

    fn needs_attention_probs(&self, block: usize) -> bool {
        self.steps.iter().any(|s| s.step.block == block)
            && self.pruning.policy.def().reads().attention
    }

    fn after_attention(
        &mut self,
        k: &Kernels,
        p: &mut Program,
        state: &TokenState,
    ) -> Result<usize> {
        let Some(index) = self.steps.iter().position(|s| s.step.block == state.block) else {
            return Ok(state.rows);
        };
        let prev = index.checked_sub(1).map(|i| &self.steps[i]);
        let out = &self.steps[index];
        if out.rows_in != state.rows {
            return Err(Error::Gpu(format!(
                "block {}: the schedule expects {} rows, the model has {}",
                state.block, out.rows_in, state.rows
            )));
        }
        let policy = self.pruning.policy.def();
        let unit_sizes = self.work.filled_f32("unit sizes", 1.0);
        let at = PrunePoint {
            k,
            index,
            block: state.block,
            depth: self.layout.depth,
            shape: TokenShape {
                batch: state.batch,
                n: state.rows,
                heads: state.heads,
                prefix: state.protected,
            },
            probs: state.probs,
            keys: state.keys,
            tokens: state.tokens,
            sizes: prev.and_then(|s| s.sizes.as_ref()).unwrap_or(&unit_sizes),
            valid: prev.and_then(Self::masked_counts),
            orig: prev.map_or(&self.identity, |s| &s.kept),
            target: match out.step.keep {
                Keep::Tokens(k) => Target::Rows(state.protected + k),
                Keep::Threshold(theta) => Target::Threshold(theta),
            },
            options: &self.pruning.options,
            work: &self.work,
        };
        debug_assert_eq!(
            policy.keep_rule() == KeepRule::Threshold,
            matches!(at.target, Target::Threshold(_))
        );
        if let Some(exits) = &out.exits {
            let len = state.batch * state.rows * state.width;
            p.push(k.copy(&at.label("exits"), state.tokens, exits, len)?);
        }
        let mut steps = Vec::new();
        let selection = policy.plan(&at, &mut steps)?;
        p.extend(steps);
        let rows = self.apply(k, p, &at, out, selection)?;
        let rows_out = out.rows_out;
        self.steps[index].compacted = Some(rows);
        Ok(rows_out)
    }
}
