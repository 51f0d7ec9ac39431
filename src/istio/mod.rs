//! Istio's own rules, as istiod and the injector apply them. Pure functions, each unit-tested
//! against the behaviour documented in DESIGN.md section 3.

pub mod duration;
pub mod hosts;
pub mod mesh;
pub mod mtls;
pub mod protocol;
pub mod retry;
pub mod sidecar;
