//! Evaluation, one driver for every family and task:
//!
//! - [`data`]: labelled image folders and sentence files; [`head`]: a linear head on embeddings;
//! - [`task`]: what is scored (classes, embeddings) and the [`task::Answer`] every output gives;
//! - [`driver`]: every setting (dense, each schedule) on each batch in turn; calibration;
//! - [`stats`]: paired standard errors, medians of paired ratios; [`report`]: the figures.

pub mod data;
pub mod driver;
pub mod head;
pub mod report;
pub mod stats;
pub mod task;
