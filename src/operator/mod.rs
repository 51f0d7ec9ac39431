//! The controller: the only code that talks to the API server.

pub mod status;
