//! The offline analyzer.
