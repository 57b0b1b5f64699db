//! Bad input and broken devices never panic: broken models and files (`errors`), hostile sizes and
//! files (`hostile`), device faults (`device_faults`) and the fuzzer's saved failures
//! (`fuzz_regressions`). One test binary; `device_faults` opens (and breaks) devices of its own
//! beside the shared one.

#[path = "../common/mod.rs"]
mod common;

mod device_faults;
mod errors;
mod fuzz_regressions;
mod hostile;
