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

    /// The adapter lacks a feature or a limit that what was asked needs: shader-f16, subgroups, a
    /// storage binding too small for a weight or for the kernel timings. `what` names what asked.
    #[error("{what}: {reason}")]
    AdapterLimit { what: String, reason: String },

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

/// A stable name for what kind of error happened, for programs to branch on (the browser API puts
/// it on every JavaScript `Error` as `code`). The message says the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// No GPU adapter (in the browser: no WebGPU).
    NoWebgpu,
    /// The adapter lacks a feature or limit the call needs (shader-f16, a batch over its largest
    /// storage binding, a weight that does not fit one).
    AdapterLimit,
    /// The model's files: unreadable, inconsistent, or of a layout not supported.
    BadModel,
    BadImage,
    BadText,
    /// An option or argument out of range, or a labels file that does not parse.
    BadOptions,
    /// More than the runtime takes: a model over the browser's size limit, the GPU out of memory.
    TooLarge,
    DeviceLost,
    /// The forward pass overflowed (NaN or infinity).
    NonFinite,
    /// A call while the same model is still busy with another (browser).
    Busy,
    /// Reading or writing a file or the browser's storage.
    Storage,
    /// Anything else the GPU reported.
    Gpu,
    Download,
}

impl ErrorCode {
    /// Every code, in the order the browser's TypeScript `ErrorCode` type lists them.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::NoWebgpu,
        ErrorCode::AdapterLimit,
        ErrorCode::BadModel,
        ErrorCode::BadImage,
        ErrorCode::BadText,
        ErrorCode::BadOptions,
        ErrorCode::TooLarge,
        ErrorCode::DeviceLost,
        ErrorCode::NonFinite,
        ErrorCode::Busy,
        ErrorCode::Storage,
        ErrorCode::Gpu,
        ErrorCode::Download,
    ];

    /// The code as JavaScript and JSON see it, e.g. `BAD_IMAGE`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoWebgpu => "NO_WEBGPU",
            ErrorCode::AdapterLimit => "ADAPTER_LIMIT",
            ErrorCode::BadModel => "BAD_MODEL",
            ErrorCode::BadImage => "BAD_IMAGE",
            ErrorCode::BadText => "BAD_TEXT",
            ErrorCode::BadOptions => "BAD_OPTIONS",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::DeviceLost => "DEVICE_LOST",
            ErrorCode::NonFinite => "NON_FINITE",
            ErrorCode::Busy => "BUSY",
            ErrorCode::Storage => "STORAGE",
            ErrorCode::Gpu => "GPU",
            ErrorCode::Download => "DOWNLOAD",
        }
    }
}

impl Error {
    /// What kind of error this is ([`ErrorCode`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Io { .. } => ErrorCode::Storage,
            Error::Safetensors { .. }
            | Error::MissingTensor { .. }
            | Error::TensorShape { .. }
            | Error::TensorDtype { .. }
            | Error::UnknownLayout { .. }
            | Error::Config { .. } => ErrorCode::BadModel,
            Error::Image { .. } => ErrorCode::BadImage,
            // A text's own errors name the parameter `text` ("text 2 is empty").
            Error::InvalidParam { name, .. } if name == "text" || name == "texts" => {
                ErrorCode::BadText
            }
            Error::InvalidParam { .. } | Error::Labels { .. } => ErrorCode::BadOptions,
            Error::NoAdapter(_) => ErrorCode::NoWebgpu,
            Error::AdapterLimit { .. } | Error::BatchTooLarge { .. } => ErrorCode::AdapterLimit,
            Error::Gpu(_) => ErrorCode::Gpu,
            Error::DeviceLost(_) => ErrorCode::DeviceLost,
            Error::OutOfMemory(_) => ErrorCode::TooLarge,
            Error::NonFinite(_) => ErrorCode::NonFinite,
            Error::Download(_) => ErrorCode::Download,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The TypeScript `ErrorCode` union (written by hand in src/web/mod.rs, the wasm-only entry
    /// point) names exactly the Rust codes, in order: the two cannot drift apart.
    #[test]
    fn the_typescript_error_codes_are_the_rust_ones() {
        let web = include_str!("web/mod.rs");
        let start = web
            .find("export type ErrorCode =")
            .expect("the ErrorCode type");
        let end = start + web[start..].find(';').unwrap();
        let listed: Vec<&str> = web[start..end].split('"').skip(1).step_by(2).collect();
        let rust: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, rust);
    }

    #[test]
    fn every_kind_of_error_has_its_code() {
        let cases = [
            (
                Error::Image {
                    name: "a.png".into(),
                    reason: "not an image".into(),
                },
                "BAD_IMAGE",
            ),
            (Error::config("config.json", "bad"), "BAD_MODEL"),
            (Error::param("text", "text 2 is empty"), "BAD_TEXT"),
            (Error::param("flops", "must be in (0, 1]"), "BAD_OPTIONS"),
            (
                Error::AdapterLimit {
                    what: "block0.qkv weight".into(),
                    reason: "442368 bytes do not fit the device's largest storage binding".into(),
                },
                "ADAPTER_LIMIT",
            ),
            (
                Error::param("precision", "must be one of f32, f16, auto"),
                "BAD_OPTIONS",
            ),
            (
                Error::BatchTooLarge {
                    batch: 9,
                    max: 8,
                    reason: "x".into(),
                },
                "ADAPTER_LIMIT",
            ),
            (Error::NoAdapter("none".into()), "NO_WEBGPU"),
            (Error::DeviceLost("destroyed".into()), "DEVICE_LOST"),
            (Error::OutOfMemory("x".into()), "TOO_LARGE"),
            (Error::Gpu("validation".into()), "GPU"),
        ];
        for (e, code) in cases {
            assert_eq!(e.code().as_str(), code, "{e}");
            assert_eq!(
                serde_json::to_value(e.code()).unwrap(),
                serde_json::json!(code)
            );
        }
    }
}
