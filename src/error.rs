//! The one error type of the crate. Every message names the file, tensor or parameter at fault.

use std::path::PathBuf;

/// Everything that can go wrong, from reading a model to running it on a GPU.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{file}: not a valid safetensors file: {reason}")]
    Safetensors { file: String, reason: String },

    #[error("{file}: tensor `{name}` is missing")]
    MissingTensor { file: String, name: String },

    #[error("{file}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    TensorShape {
        file: String,
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },

    #[error(
        "{file}: tensor `{name}` has dtype {dtype}; only F32, F16 and BF16 weights are supported"
    )]
    TensorDtype {
        file: String,
        name: String,
        dtype: String,
    },

    #[error("{file}: unknown model layout: {reason}")]
    UnknownLayout { file: String, reason: String },

    /// A config file that is unreadable, or that contradicts itself or the weights.
    #[error("{file}: {reason}")]
    Config { file: String, reason: String },

    #[error("image {name}: {reason}")]
    Image { name: String, reason: String },

    #[error("invalid {name}: {reason}")]
    InvalidParam { name: String, reason: String },

    #[error("labels file {file}: line {line}: {reason}")]
    Labels {
        file: String,
        line: usize,
        reason: String,
    },

    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    #[error("a batch of {batch} does not fit this device: {reason}; the largest batch that fits is {max}")]
    BatchTooLarge {
        batch: usize,
        max: usize,
        reason: String,
    },

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    #[error("the GPU ran out of memory {0}; a smaller batch needs less")]
    OutOfMemory(String),

    /// A forward pass produced NaN or infinity: the weights or the input overflowed.
    #[error("{0}")]
    NonFinite(String),

    #[error("model download failed: {0}")]
    Download(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn param(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParam {
            name: name.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn config(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            file: file.into(),
            reason: reason.into(),
        }
    }
}
