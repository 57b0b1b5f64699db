//! `zeroprune`: the native command-line tool. A thin entry point over the library.

mod bench;
mod commands;
mod model_source;

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
    },
    /// Measure top-1 / top-5 accuracy on a labelled folder of images.
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
    },
    /// Measure speed: forward latency per batch size, or the GEMM kernels alone (--kernels).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { json } => commands::info(json),
        Command::Classify {
            model,
            images,
            top,
            labels,
            json,
        } => commands::classify(&model, &images, top, labels.as_deref(), json),
        Command::Eval {
            model,
            images,
            labels,
            limit,
            batch,
            json,
        } => commands::eval(&model, &images, &labels, limit, batch, json),
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
