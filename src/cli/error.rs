//! What can go wrong in the CLI. Every variant is the user's input or environment, so each maps
//! to exit code 2 and a message naming the file (and line, where known).

use std::fmt;
use std::path::PathBuf;

use crate::istio::mesh::ConfigError;
use crate::snapshot::{BuildError, DecodeError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code for bad input, unreadable files and failed writes.
pub const EXIT_BAD_INPUT: u8 = 2;

/// A place in the input: a file (or `<stdin>`) and, when known, a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub line: Option<u64>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file),
            None => f.write_str(&self.file),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: larger than the {limit}-byte limit for one input")]
    TooLarge { file: String, limit: usize },

    #[error("{file}: not UTF-8 text")]
    NotUtf8 { file: String },

    #[error("{at}: invalid YAML or JSON: {message}")]
    Syntax {
        at: Position,
        message: String,
        /// Boxed: the parser's error is large, and every `Result` here would carry its size.
        #[source]
        source: Option<Box<serde_saphyr::Error>>,
    },

    #[error("{at}: {source}")]
    Decode {
        at: Position,
        #[source]
        source: DecodeError,
    },

    #[error("{at}: {what}")]
    Malformed { at: Position, what: String },

    #[error("{at}: {source}")]
    Config {
        at: Position,
        #[source]
        source: BuildError,
    },

    #[error("--mesh-config {}: {source}", .path.display())]
    MeshConfig {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },

    #[error("{0}")]
    Usage(String),

    #[error("writing the report: {0}")]
    Write(#[source] std::io::Error),

    #[error("serializing the report: {0}")]
    Serialize(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        EXIT_BAD_INPUT
    }
}
