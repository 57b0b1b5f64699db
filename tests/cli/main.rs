//! The `zeroprune` command line end to end: image commands (`cli`), text commands (`cli_text`),
//! `bench` (`bench_cli`), the kernel-choice cache on disk (`tune_cache`), the kernel choice that
//! cannot go wrong (`kernel_choice`) and the charts and token panels it draws (`draw`). Needs the
//! `cli` feature (the binary, `CARGO_BIN_EXE_zeroprune`, and `zeroprune::draw`).

#[path = "../common/mod.rs"]
mod common;

mod bench_cli;
mod cli;
mod cli_text;
mod draw;
mod kernel_choice;
mod tune_cache;
