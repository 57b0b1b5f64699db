//! What a model family is to the session: everything that differs between a ViT and a BERT encoder,
//! and nothing else. A family owns its config, its weights on the GPU, its graph, how an input is
//! laid out into rows (and which leading rows are protected from pruning), and what its outputs
//! mean. The session ([`crate::Session`]) owns the rest: the GPU, the kernels and their choice,
//! precision, the programs it compiled, the pruning plan, and playing, reading back and checking a
//! run. Adding a family is one folder under `model/` that implements [`Family`].

use super::TokenGeometry;
use crate::error::Result;
use crate::gpu::kernel::Elem;
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::hook::TokenHook;

/// Items in a batch, and rows per item: what the buffers and programs of a run are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct BatchShape {
    pub batch: usize,
    /// Rows per item before any pruning (a padded text batch: its longest text).
    pub rows: usize,
}

/// What mean pooling does with a token a dropping policy removed (families that pool over their
/// tokens; a classifier reading one token ignores it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dropped {
    /// It stays in the mean with its state at the pruning point, re-affined to the last
    /// LayerNorm (better accuracy and agreement downstream).
    #[default]
    Restate,
    /// It leaves the mean (the embedding stays closer to the dense one by cosine).
    Omit,
}

impl std::str::FromStr for Dropped {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "restate" => Ok(Dropped::Restate),
            "omit" => Ok(Dropped::Omit),
            other => Err(crate::Error::param(
                "dropped",
                format!("'{other}' is not restate or omit"),
            )),
        }
    }
}

/// One pruning step's results, as read back.
pub struct StepReadback<'a> {
    /// The block whose pruning point ran the step.
    pub block: usize,
    /// Rows per item before and after (protected rows included).
    pub rows_in: usize,
    pub rows_out: usize,
    /// Whether the step masks rows (threshold pruning): an item's live rows are its first ones.
    pub masked: bool,
    /// `[B, rows_out]`: the original row of each output row, `u32::MAX` past the item's count.
    pub kept: &'a [u32],
    /// `[B, rows_in, width]` (f32 bits): the states at the pruning point, where the family records
    /// them ([`Family::records_exits`]): the tokens the step drops leave with these.
    pub exits: Option<&'a [u32]>,
}

/// What a run read back: the family's buffers as raw words, and the pruning plan's results.
pub struct Readback<'a> {
    pub shape: BatchShape,
    /// The family's buffers, in [`Family::readback`] order, as 4-byte words.
    pub buffers: Vec<&'a [u32]>,
    /// Rows per item after the last step (the shape's rows without one).
    pub rows_out: usize,
    pub steps: Vec<StepReadback<'a>>,
    /// `[B, rows_out]` (f32 bits): how many original tokens each final row stands for, where a
    /// merging policy ran.
    pub sizes: Option<&'a [u32]>,
    /// Per item: FLOPs of its forward pass, counted from the rows each step kept.
    pub flops: Vec<f64>,
}

impl Readback<'_> {
    /// The original rows of item `b` that survive step `step`, in row order (protected included).
    pub fn kept(&self, step: usize, b: usize) -> Vec<u32> {
        let s = &self.steps[step];
        s.kept[b * s.rows_out..][..s.rows_out]
            .iter()
            .copied()
            .filter(|&r| r != u32::MAX)
            .collect()
    }

    /// Item `b`'s live rows at the end, `(row in the final buffer, original row, size)`: what
    /// the last step left (masked rows past a threshold step's count are not live), or the item's
    /// own `rows` rows of a padded batch without a step.
    pub fn final_rows(&self, b: usize, rows: usize) -> Vec<(usize, u32, f32)> {
        let Some(last) = self.steps.len().checked_sub(1) else {
            return (0..rows).map(|r| (r, r as u32, 1.0)).collect();
        };
        self.kept(last, b)
            .into_iter()
            .enumerate()
            .map(|(r, orig)| {
                let size = self
                    .sizes
                    .map_or(1.0, |s| f32::from_bits(s[b * self.rows_out + r]));
                (r, orig, size)
            })
            .collect()
    }
}

/// What every family's per-item output says about pruning.
pub trait ItemOutput {
    /// FLOPs of the item's forward pass.
    fn flops(&self) -> f64;
    /// Per pruning step, the item's surviving tokens (the family's own numbering).
    fn kept(&self) -> &[Vec<u32>];
    /// Drop what a long run does not keep per item (a text's per-token states).
    fn summarise(&mut self) {}
}

/// Host weights, which upload into their family's model on the GPU.
pub trait Weights {
    type Family: Family;
    /// Where the weights were read from, for messages and reports.
    fn source(&self) -> &str;
    /// The weights on the GPU, the linear layers (and the activations that only feed them)
    /// stored as `storage`.
    fn upload(&self, gpu: &GpuContext, storage: Elem) -> Result<Self::Family>;
}

/// A model family: see the module docs.
pub trait Family: Sized {
    type Config;
    /// One batch's input, as the host holds it (preprocessed pixels, token ids).
    type Input: ?Sized + ToOwned;
    /// What one item of a batch gives.
    type Output: ItemOutput;
    /// The buffers of one batch shape, allocated once and reused.
    type Buffers;

    fn config(&self) -> &Self::Config;
    fn storage(&self) -> Elem;

    /// The shape of `input`, checked: errors name what is wrong with it.
    fn shape(&self, input: &Self::Input) -> Result<BatchShape>;
    /// Rows of item `b` of `input` before pruning (a padded text's own tokens).
    fn item_rows(&self, input: &Self::Input, b: usize) -> usize;
    /// What the pruning code sees of an item of `rows` rows.
    fn geometry(&self, rows: usize) -> TokenGeometry;
    /// The largest geometry an input may have (requests are checked against it).
    fn largest_geometry(&self) -> TokenGeometry;
    /// The largest batch of `rows`-row items whose every buffer fits a binding of `max_bytes`.
    fn max_batch(&self, rows: usize, max_bytes: u64) -> usize;

    /// Items of `input` that run as separate forward passes (each a list of item indices), or
    /// `None` for one pass. Text: pruned, texts of one length run together, so that no row is
    /// padding and a text's result never depends on its neighbours.
    fn groups(&self, _input: &Self::Input, _pruned: bool) -> Option<Vec<Vec<usize>>> {
        None
    }
    /// How many items `input` holds.
    fn len(&self, input: &Self::Input) -> usize;
    /// The items `items` of `input`, as an input of their own.
    fn subset(&self, input: &Self::Input, items: &[usize]) -> <Self::Input as ToOwned>::Owned;
    /// The batches (item lists of at most `batch`) that a long input runs in: in order for images;
    /// texts of similar length together (one length per batch when pruned).
    fn batches(&self, input: &Self::Input, batch: usize, _pruned: bool) -> Vec<Vec<usize>> {
        let n = self.len(input);
        (0..n)
            .collect::<Vec<_>>()
            .chunks(batch.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }

    /// Whether pruning steps record the states their dropped tokens leave with (mean pooling).
    fn records_exits(&self) -> bool {
        false
    }

    fn buffers(&self, gpu: &GpuContext, shape: BatchShape) -> Result<Self::Buffers>;
    /// The forward pass, every step in order; `hook` may prune between attention and MLP.
    fn forward(&self, k: &Kernels, b: &Self::Buffers, hook: &mut dyn TokenHook) -> Result<Program>;
    /// Write `input` into the buffers before a run.
    fn write(&self, gpu: &GpuContext, b: &Self::Buffers, input: &Self::Input) -> Result<()>;
    /// The buffers read back after a run (its outputs).
    fn readback<'a>(&self, b: &'a Self::Buffers) -> Vec<&'a GpuTensor>;
    /// Every item's output from what was read back; `dropped` is the run's pooling option.
    fn decode(
        &self,
        input: &Self::Input,
        r: &Readback,
        dropped: Dropped,
    ) -> Result<Vec<Self::Output>>;
}
