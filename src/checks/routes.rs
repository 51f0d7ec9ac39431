//! 9xx: does routing configuration resolve to something Envoy can send to?

use std::collections::{BTreeMap, BTreeSet};

use super::retries::is_mesh_bound;
use super::{Code, Context, Findings};
use crate::istio::hosts;
use crate::istio::mtls::oldest_first;
use crate::snapshot::{Meta, VirtualServiceInfo};

pub(super) fn check(cx: &Context, out: &mut Findings) {
    for vs in cx
        .snapshot
        .virtual_services
        .iter()
        .filter(|vs| cx.checked(&vs.meta.namespace))
    {
        undefined_subsets(cx, vs, out);
    }
    duplicates(cx, out);
}

/// Subsets defined for a destination host by any DestinationRule covering it.
fn defined_subsets(cx: &Context, fqdn: &str) -> BTreeSet<String> {
    cx.snapshot
        .destination_rules
        .iter()
        .filter(|dr| hosts::matches(&hosts::resolve(&dr.spec.host, &dr.meta.namespace), fqdn))
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
            missing.into_iter().collect::<Vec<_>>().join(", "),
        ),
    );
}

fn duplicates(cx: &Context, out: &mut Findings) {
    let mut virtual_services: BTreeMap<String, Vec<&Meta>> = BTreeMap::new();
    for vs in cx
        .snapshot
        .virtual_services
        .iter()
        .filter(|vs| is_mesh_bound(vs))
    {
        let hosts: BTreeSet<String> = vs
            .spec
            .hosts
            .iter()
            .map(|h| hosts::resolve(h, &vs.meta.namespace))
            .collect();
        for host in hosts {
            virtual_services.entry(host).or_default().push(&vs.meta);
        }
    }
    let mut destination_rules: BTreeMap<String, Vec<&Meta>> = BTreeMap::new();
    for dr in cx
        .snapshot
        .destination_rules
        .iter()
        .filter(|dr| dr.spec.workload_selector.is_none())
    {
        destination_rules
            .entry(hosts::resolve(&dr.spec.host, &dr.meta.namespace))
            .or_default()
            .push(&dr.meta);
    }
    report_duplicates(cx, "VirtualService", virtual_services, out);
    report_duplicates(cx, "DestinationRule", destination_rules, out);
}

fn report_duplicates(
    cx: &Context,
    kind: &str,
    by_host: BTreeMap<String, Vec<&Meta>>,
    out: &mut Findings,
) {
    for (host, mut metas) in by_host {
        if metas.len() < 2 {
            continue;
        }
        metas.sort_by(|a, b| oldest_first(a, b));
        let oldest = format!("{}/{}", metas[0].namespace, metas[0].name);
        for meta in metas.iter().skip(1).filter(|m| cx.checked(&m.namespace)) {
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
    }
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
