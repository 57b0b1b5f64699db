//! Models end to end: the image models against PyTorch and NumPy references (`model_reference`,
//! `real_model`, `debug_run`), loading them (`loading`), preprocessing and labels (`preprocess`),
//! and the text encoders (`text_model`, `text_loading`). One test binary, one shared device.

#[path = "../common/mod.rs"]
mod common;

mod debug_run;
mod loading;
mod model_reference;
mod preprocess;
mod real_model;
mod text_loading;
mod text_model;
