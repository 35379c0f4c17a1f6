//! The error kinds of the library's tooling APIs, by whose doing (rustls's split): a setting or
//! input the caller gave that is not valid ([`ConfigError`]), and a local tool, file or process an
//! operation needs that failed ([`ToolError`]). Protocol errors have their own types beside the
//! code that detects them (`ClientError`, `EndpointError`, `SessionError`, `EventError`, ...).

/// A setting or input the caller gave is not valid; the message names it and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// A local tool, file or process the operation needs failed (a browser that does not start, a
/// certificate that cannot be read, a port that cannot be bound); the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

macro_rules! text_conversions {
    ($ty:ident) => {
        impl From<String> for $ty {
            fn from(message: String) -> $ty {
                $ty(message)
            }
        }
        impl From<&str> for $ty {
            fn from(message: &str) -> $ty {
                $ty(message.to_owned())
            }
        }
        /// For tools that report every error as text.
        impl From<$ty> for String {
            fn from(e: $ty) -> String {
                e.0
            }
        }
    };
}

text_conversions!(ConfigError);
text_conversions!(ToolError);

impl From<ConfigError> for ToolError {
    fn from(e: ConfigError) -> ToolError {
        ToolError(e.0)
    }
}
