//! `zeroprune`: the native command-line tool. A thin entry point over the library: one file per
//! command, each with its arguments and its typed output (text table or `--json`).

mod bench;
mod classify;
mod common;
mod data;
mod embed;
mod embed_image;
mod eval;
mod explain;
mod info;
mod model_source;
mod prune_args;
mod soak;
mod sweep;
mod tune;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use zeroprune::model::Precision;

/// Run pretrained vision transformers (ViT / DeiT) on any WebGPU-class GPU, with zero-shot token pruning.
///
/// The adapter is chosen by WGPU_BACKEND (vulkan, metal, dx12, gl) and WGPU_ADAPTER_NAME (part of its name).
/// Without a GPU on Linux, install Mesa's lavapipe (mesa-vulkan-drivers) and set WGPU_BACKEND=vulkan.
#[derive(Parser)]
#[command(name = "zeroprune", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Measure the kernel choice (GEMM tile, fused or unfused attention) again instead of reading
    /// it from the cache, and rewrite the cache. The first process on a machine measures (about a
    /// second on a CPU adapter); the others read ~/.cache/zeroprune/kernel-choices.json
    /// ($ZEROPRUNE_CACHE_DIR moves it; `zeroprune info` shows it).
    #[arg(long, global = true)]
    retune: bool,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model folder (model.safetensors + config.json, timm or Hugging Face layout) or a bare .safetensors.
    /// Default: $ZEROPRUNE_MODEL, else DeiT-Tiny from the Hugging Face hub (downloaded once into its cache).
    /// `random:deit-tiny`, `random:deit-small`, `random:deit-base`: seeded random weights of that shape
    /// (for speed: bench needs no trained weights).
    #[arg(long, env = "ZEROPRUNE_MODEL")]
    model: Option<PathBuf>,
    /// How weights and activations are stored on the GPU. f32: the reference. f16: the linear
    /// weights and the activations that only feed a GEMM as halves, sums in f32 (needs the
    /// adapter's shader-f16; DeiT-Tiny gave f32's top-1 on all 1700 ImageNet images tried, see the
    /// README). auto: f16 where the adapter has it and it measured faster there, else f32.
    #[arg(long, value_enum, default_value_t = Precision::F32, env = "ZEROPRUNE_PRECISION")]
    precision: Precision,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter in use: name, backend, driver, limits and features.
    Info {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the top classes of each image.
    Classify(classify::ClassifyArgs),
    /// Measure top-1 / top-5 accuracy on a labelled folder of images.
    /// With --policy, the dense model runs on the same images too, for `agreement` (the share of
    /// images whose top-1 class is the dense model's).
    Eval(eval::EvalArgs),
    /// Measure speed: warm-up, then dense and pruned (--policy) runs interleaved per batch size;
    /// latency (median, spread), images/s, GFLOPs, the speedup next to the FLOPs ratio, the share of
    /// GPU time in pruning steps (by phase: scoring, selection, compaction, merging) and a
    /// per-kernel breakdown from timestamp queries; or the kernels alone (--kernels), with the
    /// invocations each kernel family launches (its GPU shape).
    Bench(bench::BenchArgs),
    /// Compare pruning policies: each at several FLOPs targets, top-1 and agreement with the dense
    /// model on the same images; prints a table and writes a PNG plot (accuracy vs GFLOPs).
    Sweep(sweep::SweepArgs),
    /// Search a policy's schedule under a FLOPs or latency budget: families of schedules, then a
    /// local search, scored by agreement with the dense model on calibration images (no labels
    /// needed). Writes a schedule file that every command takes with --schedule.
    Tune(tune::TuneArgs),
    /// Draw what a pruning policy keeps: the image as the model sees it, then one panel per pruning
    /// step with the dropped patches darkened (PNG).
    Explain(explain::ExplainArgs),
    /// Embed texts with a BERT-family encoder (e.g. all-MiniLM-L6-v2): one vector per text, pooled
    /// and normalised as the model folder says (texts are cut to the model's length, with a
    /// warning); or images with an image model: the final-normed class token. With a policy, each
    /// image's cosine to its dense embedding.
    Embed(embed::EmbedArgs),
    /// The cosine similarity of two texts' embeddings, or of two images'.
    Similarity(embed::SimilarityArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    zeroprune::gpu::tune_cache::set_retune(cli.retune);
    let result = match cli.command {
        Command::Info { json } => info::run(json),
        Command::Classify(args) => classify::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Tune(args) => tune::run(&args),
        Command::Explain(args) => explain::run(&args),
        Command::Embed(args) => embed::run_embed(&args),
        Command::Similarity(args) => embed::run_similarity(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
