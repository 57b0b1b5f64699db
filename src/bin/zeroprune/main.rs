//! `zeroprune`: the native command-line tool. A thin entry point over the library.

mod bench;
mod commands;
mod explain;
mod model_source;
mod prune_args;
mod sweep;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Run pretrained vision transformers (ViT / DeiT) on any WebGPU-class GPU, with zero-shot token pruning.
///
/// The adapter is chosen by WGPU_BACKEND (vulkan, metal, dx12, gl) and WGPU_ADAPTER_NAME (part of its name).
/// Without a GPU on Linux, install Mesa's lavapipe (mesa-vulkan-drivers) and set WGPU_BACKEND=vulkan.
#[derive(Parser)]
#[command(name = "zeroprune", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Model folder (model.safetensors + config.json, timm or Hugging Face layout) or a bare .safetensors.
    /// Default: $ZEROPRUNE_MODEL, else DeiT-Tiny from the Hugging Face hub (downloaded once into its cache).
    #[arg(long, env = "ZEROPRUNE_MODEL")]
    model: Option<PathBuf>,
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
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        /// Images (JPEG, PNG, WebP, BMP, GIF).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Class names: JSON list, JSON {"0": name} map or one name per line.
        /// Default: the model's config, else the ImageNet-1k names for 1000-class models.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        prune: prune_args::PruneArgs,
    },
    /// Measure top-1 / top-5 accuracy on a labelled folder of images.
    /// With --policy, the dense model runs on the same images too, for `agreement` (the share of
    /// images whose top-1 class is the dense model's).
    Eval {
        #[command(flatten)]
        model: ModelArgs,
        /// Folder of images.
        #[arg(long)]
        images: PathBuf,
        /// `name<TAB>class-index` lines, one per image.
        #[arg(long)]
        labels: PathBuf,
        /// Evaluate only the first N images (in file-name order).
        #[arg(long)]
        limit: Option<usize>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Print one JSON object (with every prediction).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        prune: prune_args::PruneArgs,
    },
    /// Measure speed: warm-up, then dense and pruned (--policy) runs interleaved per batch size;
    /// latency (median, spread), images/s, GFLOPs, the speedup next to the FLOPs ratio, the share of
    /// GPU time in pruning steps and a per-kernel breakdown from timestamp queries; or the kernels
    /// alone (--kernels).
    Bench(bench::BenchArgs),
    /// Compare pruning policies: each at several FLOPs targets, top-1 and agreement with the dense
    /// model on the same images; prints a table and writes a PNG plot (accuracy vs GFLOPs).
    Sweep(sweep::SweepArgs),
    /// Draw what a pruning policy keeps: the image as the model sees it, then one panel per pruning
    /// step with the dropped patches darkened (PNG).
    Explain {
        #[command(flatten)]
        model: ModelArgs,
        /// The image.
        image: PathBuf,
        /// Output PNG (default: IMAGE-POLICY.png in the current folder).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Print one JSON object (with the kept patch indices).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        prune: prune_args::PruneArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json } => commands::info(json),
        Command::Classify {
            model,
            prune,
            images,
            top,
            labels,
            json,
        } => commands::classify(&model, &prune, &images, top, labels.as_deref(), json),
        Command::Eval {
            model,
            prune,
            images,
            labels,
            limit,
            batch,
            json,
        } => commands::eval(&model, &prune, &images, &labels, limit, batch, json),
        Command::Bench(args) => bench::run(&args),
        Command::Sweep(args) => sweep::run(&args),
        Command::Explain {
            model,
            prune,
            image,
            out,
            json,
        } => explain::run(&model, &prune, &image, out.as_deref(), json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
