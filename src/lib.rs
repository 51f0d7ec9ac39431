//! meshready: tells whether namespaces are ready for the Istio service mesh, and why requests
//! would fail with 503 once they are meshed.
//!
//! `snapshot`, `istio`, `checks` and `remediation` are pure: owned data in, findings and plans out.
//! Only `operator` talks to the API server; `cli` reads files.

pub mod api;
pub mod checks;
pub mod cli;
pub mod istio;
pub mod operator;
pub mod remediation;
pub mod snapshot;
