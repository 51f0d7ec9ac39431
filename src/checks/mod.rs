//! The checks: pure functions from a [`Snapshot`] to [`Finding`]s, one module per family.

mod catalogue;
mod context;
mod incremental;
mod index;
mod injection;
mod lifecycle;
mod listeners;
mod mtls;
mod probes;
mod protocols;
mod retries;
mod routes;
#[cfg(test)]
pub(crate) mod testing;
mod timeouts;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

pub use catalogue::{Code, Family, Severity, UnknownCode};
pub use context::Context;
pub use incremental::{Incremental, IncrementalError, Replaced};
pub use index::Index;
// Read by the remediation planner, which mitigates exactly what these checks find.
pub use retries::{is_mesh_bound, virtual_services_for};
pub use timeouts::{KeepAliveSource, Mismatch, keep_alive_mismatch, recommended_idle_timeout};

use crate::snapshot::{Meta, ObjectRef, Snapshot};

/// One problem found on one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub object: ObjectRef,
    /// What breaks, and the exact fix.
    pub message: String,
}

impl Finding {
    /// Most severe first, then by namespace, object and code: the order reports use.
    pub fn report_order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.object.namespace.cmp(&b.object.namespace))
            .then_with(|| a.object.kind.cmp(&b.object.kind))
            .then_with(|| a.object.name.cmp(&b.object.name))
            .then_with(|| a.code.cmp(&b.code))
    }
}

/// What to check: which namespaces, with which user-supplied facts.
#[derive(Clone, Debug, Default)]
pub struct CheckRequest {
    /// Namespaces to check; system namespaces among them are skipped.
    pub namespaces: BTreeSet<String>,
    /// The apps' keep-alive timeouts by (namespace, service), from `spec.appIdleTimeouts`.
    pub app_idle_timeouts: BTreeMap<(String, String), Duration>,
    /// Codes not to report.
    pub disabled: BTreeSet<Code>,
}

/// Findings as the checks produce them; honours `meshreadiness.io/ignore` on each object.
#[derive(Debug, Default)]
pub(crate) struct Findings(Vec<Finding>);

impl Findings {
    pub(crate) fn add(
        &mut self,
        code: Code,
        severity: Severity,
        kind: &str,
        meta: &Meta,
        message: String,
    ) {
        if meta.ignored.contains(&code) {
            return;
        }
        self.0.push(Finding {
            code,
            severity,
            object: ObjectRef::new(kind, meta.namespace.clone(), meta.name.clone()),
            message,
        });
    }
}

/// Runs every check on the requested namespaces. Findings come sorted, most severe first.
pub fn run(snapshot: &Snapshot, request: &CheckRequest) -> Vec<Finding> {
    // Through the index rather than `Context::new`, so the mTLS policies borrow the index's
    // arrangement instead of arranging them a second time.
    let index = Index::new(snapshot);
    run_indexed(snapshot, &index, request)
}

/// [`run`] with an [`Index`] of `snapshot` made earlier: a run on one namespace then reads only
/// what concerns that namespace.
pub fn run_indexed(snapshot: &Snapshot, index: &Index, request: &CheckRequest) -> Vec<Finding> {
    run_in(&Context::indexed(snapshot, index, request))
}

fn run_in(cx: &Context) -> Vec<Finding> {
    let request = cx.request;
    let mut out = Findings::default();
    injection::check(cx, &mut out);
    protocols::check(cx, &mut out);
    mtls::check(cx, &mut out);
    probes::check(cx, &mut out);
    lifecycle::check(cx, &mut out);
    let mismatches = timeouts::mismatches(cx);
    timeouts::check(cx, &mismatches, &mut out);
    retries::check(cx, &mismatches, &mut out);
    listeners::check(cx, &mut out);
    routes::check(cx, &mut out);
    let mut findings: Vec<Finding> = out
        .0
        .into_iter()
        .filter(|f| !request.disabled.contains(&f.code))
        .collect();
    findings.sort_by(Finding::report_order);
    findings.dedup_by(|a, b| a.code == b.code && a.object == b.object);
    findings
}

/// How many items a message lists before "and N more": a Service with 2,000 ports must not
/// make a 100 KB message (the status, at most 50 findings, has to fit etcd's object limit, and
/// people have to read it).
pub const LISTED: usize = 8;

/// `items` joined by `separator`, at most [`LISTED`] of them, then "and N more".
pub fn listed<S: AsRef<str>>(items: &[S], separator: &str) -> String {
    listed_at_most(items, separator, LISTED)
}

/// `items` joined by `separator`, at most `max` of them, then "and N more".
pub fn listed_at_most<S: AsRef<str>>(items: &[S], separator: &str, max: usize) -> String {
    let mut out: Vec<&str> = items.iter().take(max).map(AsRef::as_ref).collect();
    let more;
    if items.len() > max {
        more = format!("and {} more", items.len() - max);
        out.push(&more);
    }
    out.join(separator)
}

#[cfg(test)]
mod listed_tests {
    use super::*;

    #[test]
    fn lists_a_few_then_counts_the_rest() {
        assert_eq!(listed(&["a", "b"], ", "), "a, b");
        let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(listed(&many, "; "), "0; 1; 2; 3; 4; 5; 6; 7; and 12 more");
        assert_eq!(listed::<&str>(&[], ", "), "");
        assert_eq!(listed_at_most(&many, ", ", 2), "0, 1, and 18 more");
    }
}
