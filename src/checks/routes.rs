//! 9xx: does routing configuration resolve to something Envoy can send to?

use crate::checks::listed;
use std::collections::BTreeSet;

use super::retries::is_mesh_bound;
use super::{Code, Context, Findings};
use crate::istio::hosts;
use crate::istio::mtls::oldest_first;
use crate::snapshot::{Meta, VirtualServiceInfo};

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for vs in cx.virtual_services() {
        undefined_subsets(cx, vs, out);
    }
    duplicates(cx, out);
}

/// Subsets defined for a destination host by any DestinationRule covering it.
fn defined_subsets(cx: &Context, fqdn: &str) -> BTreeSet<String> {
    cx.destination_rules_for(fqdn)
        .into_iter()
        .flat_map(|dr| dr.spec.subsets.iter().map(|s| s.name.clone()))
        .collect()
}

fn undefined_subsets(cx: &Context, vs: &VirtualServiceInfo, out: &mut Findings) {
    let mut missing = BTreeSet::new();
    for route in &vs.spec.http {
        for destination in route.route.iter().map(|d| &d.destination) {
            let Some(subset) = &destination.subset else {
                continue;
            };
            let fqdn = hosts::resolve(&destination.host, &vs.meta.namespace);
            if !defined_subsets(cx, &fqdn).contains(subset) {
                missing.insert(format!("subset {subset:?} of {fqdn}"));
            }
        }
    }
    if missing.is_empty() {
        return;
    }
    out.add(
        Code::MR901,
        Code::MR901.default_severity(),
        "VirtualService",
        &vs.meta,
        format!(
            "VirtualService {} routes to {}, which no DestinationRule defines: Envoy has no such \
             cluster and answers 503 NC (no cluster found; NR in Envoy before 1.18). Fix: add the subset (name and labels) to the \
             host's DestinationRule, or route without it.",
            vs.meta.name,
            listed(&missing.into_iter().collect::<Vec<_>>(), ", "),
        ),
    );
}

/// MR902: each checked VirtualService or DestinationRule that is not the oldest for one of its
/// hosts, looked up in the index's by-host groups.
fn duplicates(cx: &Context, out: &mut Findings) {
    let all_vs = &cx.snapshot.virtual_services;
    for vs in cx.virtual_services().filter(|vs| is_mesh_bound(vs)) {
        let hosts: BTreeSet<String> = vs
            .spec
            .hosts
            .iter()
            .map(|h| hosts::resolve(h, &vs.meta.namespace))
            .collect();
        for host in hosts {
            let group: Vec<&Meta> = cx
                .index()
                .virtual_services_by_host
                .get(&host)
                .into_iter()
                .flatten()
                .map(|i| &all_vs[*i].meta)
                .collect();
            report_duplicate("VirtualService", &host, &vs.meta, group, out);
        }
    }
    let all_dr = &cx.snapshot.destination_rules;
    for dr in cx
        .destination_rules()
        .filter(|dr| dr.spec.workload_selector.is_none())
    {
        let host = hosts::resolve(&dr.spec.host, &dr.meta.namespace);
        let group: Vec<&Meta> = cx
            .index()
            .destination_rules_by_host
            .get(&host)
            .into_iter()
            .flatten()
            .map(|i| &all_dr[*i])
            .filter(|d| d.spec.workload_selector.is_none())
            .map(|d| &d.meta)
            .collect();
        report_duplicate("DestinationRule", &host, &dr.meta, group, out);
    }
}

/// Reports `meta` when it is in `group` (every object of its kind for `host`) but not its oldest.
fn report_duplicate(
    kind: &str,
    host: &str,
    meta: &Meta,
    mut group: Vec<&Meta>,
    out: &mut Findings,
) {
    if group.len() < 2 {
        return;
    }
    group.sort_by(|a, b| oldest_first(a, b));
    let first = group[0];
    if std::ptr::eq(first, meta) {
        return;
    }
    let oldest = format!("{}/{}", first.namespace, first.name);
    out.add(
        Code::MR902,
        Code::MR902.default_severity(),
        kind,
        meta,
        format!(
            "{kind} {} is a second {kind} for {host} (the first is {oldest}): Istio's merge of \
             the two is undefined, so routes or traffic policies may be ignored at random. Fix: \
             merge it into {oldest} and delete it.",
            meta.name,
        ),
    );
}

#[cfg(test)]
mod tests {
    use crate::checks::Code;
    use crate::checks::testing::{findings, objects};

    fn vs(name: &str, created: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: '{created}'}}\nspec: {spec}\n"
        )
    }

    fn dr(name: &str, created: &str, spec: &str) -> String {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: '{created}'}}\nspec: {spec}\n"
        )
    }

    #[test]
    fn mr901_undefined_subset() {
        let yaml = [
            dr("reviews", "2024-01-01T00:00:00Z", "{host: reviews, subsets: [{name: v1, labels: {version: v1}}]}"),
            vs("good", "2024-01-01T00:00:00Z", "{hosts: [reviews], http: [{route: [{destination: {host: reviews, subset: v1}}]}]}"),
            vs("bad", "2024-01-01T00:00:00Z", "{hosts: [ratings], http: [{route: [{destination: {host: reviews.shop.svc.cluster.local, subset: v2}}]}]}"),
        ]
        .concat();
        assert_eq!(
            objects(&findings(&yaml), Code::MR901),
            vec!["VirtualService/bad"]
        );
    }

    #[test]
    fn mr902_each_duplicate_beyond_the_oldest() {
        let yaml = [
            vs("first", "2024-01-01T00:00:00Z", "{hosts: [reviews], http: [{route: [{destination: {host: reviews}}]}]}"),
            vs("second", "2024-02-01T00:00:00Z", "{hosts: [reviews.shop.svc.cluster.local], http: [{route: [{destination: {host: reviews}}]}]}"),
            vs("gateway", "2024-03-01T00:00:00Z", "{hosts: [reviews], gateways: [shop-gw], http: [{route: [{destination: {host: reviews}}]}]}"),
            dr("dr-a", "2024-01-01T00:00:00Z", "{host: reviews}"),
            dr("dr-b", "2024-01-02T00:00:00Z", "{host: reviews}"),
            dr("dr-selected", "2024-01-03T00:00:00Z", "{host: reviews, workloadSelector: {matchLabels: {app: x}}}"),
            dr("other", "2024-01-03T00:00:00Z", "{host: ratings}"),
        ]
        .concat();
        assert_eq!(
            objects(&findings(&yaml), Code::MR902),
            vec!["DestinationRule/dr-b", "VirtualService/second"]
        );
    }
}
