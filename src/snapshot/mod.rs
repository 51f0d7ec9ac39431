//! The owned, normalised view of the cluster (or of manifest files) that the checks read.

mod build;
mod cached;
mod model;
mod object;
pub mod scope;

pub use build::{BuildError, BuildOptions, ISTIO_SYSTEM_NAMESPACE, SnapshotBuilder};
pub use cached::{CachedPod, CachedService};
pub use model::*;
pub use object::{ClusterObject, DecodeError};
