//! 1xx: is the sidecar (going to be) there?

use super::context::pods_phrase;
use super::{Code, Context, Findings};
use crate::api::keys;
use crate::checks::listed;
use crate::istio::sidecar;
use crate::snapshot::Injection;

pub(super) fn check(cx: &Context, out: &mut Findings) {
    namespaces(cx, out);
    pods_missing_sidecar(cx, out);
}

fn namespaces(cx: &Context, out: &mut Findings) {
    for ns in cx
        .request
        .namespaces
        .iter()
        .filter(|ns| cx.checked(ns))
        .filter_map(|ns| cx.snapshot.namespace(ns))
    {
        let name = &ns.meta.name;
        match ns.injection {
            // Ambient namespaces are in the mesh without sidecars: nothing to inject.
            Injection::Enabled | Injection::Ambient => {}
            Injection::Disabled => out.add(
                Code::MR101,
                Code::MR101.default_severity(),
                "Namespace",
                &ns.meta,
                format!(
                    "Namespace {name} has istio-injection=disabled, so its pods get no sidecar; the other \
                     findings here say what would break once it is meshed. Fix: kubectl label namespace \
                     {name} istio-injection=enabled --overwrite, then restart its workloads."
                ),
            ),
            Injection::Unlabelled => out.add(
                Code::MR101,
                Code::MR101.default_severity(),
                "Namespace",
                &ns.meta,
                format!(
                    "Namespace {name} has no injection label, so its pods get no sidecar; the other \
                     findings here say what would break once it is meshed. Fix: kubectl label namespace \
                     {name} istio-injection=enabled (or istio.io/rev=<revision>), then restart its workloads."
                ),
            ),
        }
        if ns.conflicting_labels {
            let rev = ns
                .meta
                .labels
                .get(keys::ISTIO_REV)
                .map_or("", String::as_str);
            let injection = ns
                .meta
                .labels
                .get(keys::ISTIO_INJECTION)
                .map_or("", String::as_str);
            out.add(
                Code::MR103,
                Code::MR103.default_severity(),
                "Namespace",
                &ns.meta,
                if injection == "disabled" {
                    format!(
                        "Namespace {name} has both istio-injection=disabled and istio.io/rev={rev}: \
                         the disabled label wins, so revision {rev} injects nothing here and the \
                         revision label misleads. Fix: remove one, e.g. kubectl label namespace {name} \
                         istio-injection- (to mesh it with {rev})."
                    )
                } else {
                    format!(
                        "Namespace {name} has both istio-injection={injection} and istio.io/rev={rev}: \
                         the default injector's webhook matches istio-injection and the revision's \
                         excludes it, so pods get the default revision, not {rev}. Fix: keep one, e.g. \
                         kubectl label namespace {name} istio-injection-"
                    )
                },
            );
        }
    }
}

fn pods_missing_sidecar(cx: &Context, out: &mut Findings) {
    for (i, w) in cx.workloads() {
        if cx.workload_injection(i) != Injection::Enabled
            || !sidecar::will_inject(Injection::Enabled, &w.template)
        {
            continue;
        }
        let missing: Vec<_> = w
            .live_pods()
            .filter(|p| !p.has_proxy && !p.host_network)
            .collect();
        if missing.is_empty() {
            continue;
        }
        let ns = &w.meta.namespace;
        let fix = if w.kind == "Pod" {
            format!("delete and recreate pod {} -n {ns}", w.meta.name)
        } else {
            format!(
                "kubectl rollout restart {}/{} -n {ns}",
                w.kind.to_lowercase(),
                w.meta.name
            )
        };
        let names: Vec<&str> = missing.iter().take(3).map(|p| p.name.as_str()).collect();
        out.add(
            Code::MR102,
            Code::MR102.default_severity(),
            &w.kind,
            &w.meta,
            format!(
                "{} of {}/{} ({}) run without an istio-proxy sidecar although namespace {ns} is \
                 injected (they were created before injection was enabled, or the injector was down): \
                 their traffic bypasses the mesh and STRICT servers reset it. Fix: {fix}.",
                pods_phrase(missing.len()),
                w.kind,
                w.meta.name,
                listed(&names, ", "),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::checks::Code;
    use crate::checks::testing::{findings, objects, snapshot_with};
    use crate::snapshot::BuildOptions;

    #[test]
    fn unlabelled_and_disabled_namespaces_fire_mr101() {
        let f = findings(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {istio-injection: disabled}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: c, labels: {istio-injection: enabled}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: d, labels: {istio.io/rev: canary}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: e, labels: {istio.io/dataplane-mode: ambient}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: kube-system}\n",
        );
        assert_eq!(objects(&f, Code::MR101), vec!["Namespace/a", "Namespace/b"]);
        let a = f.iter().find(|f| f.object.name == "a").unwrap();
        assert_eq!(a.object.namespace, "a");
    }

    #[test]
    fn implied_namespaces_follow_assume_injected() {
        let yaml = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec: {ports: [{name: http, port: 80}]}\n";
        let assumed =
            crate::checks::testing::run_all(&snapshot_with(yaml, &BuildOptions::default()));
        assert!(objects(&assumed, Code::MR101).is_empty());
        let options = BuildOptions {
            assume_injected: false,
            ..BuildOptions::default()
        };
        let not_assumed = crate::checks::testing::run_all(&snapshot_with(yaml, &options));
        assert_eq!(objects(&not_assumed, Code::MR101), vec!["Namespace/shop"]);
    }

    #[test]
    fn namespaces_by_default_count_as_injected() {
        let f = findings(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\n\
             data:\n  values: '{\"sidecarInjectorWebhook\":{\"enableNamespacesByDefault\":true}}'\n",
        );
        assert!(objects(&f, Code::MR101).is_empty());
    }

    #[test]
    fn both_injection_labels_fire_mr103() {
        let f = findings(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {istio-injection: enabled, istio.io/rev: canary}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: b, labels: {istio.io/rev: canary}}\n",
        );
        assert_eq!(objects(&f, Code::MR103), vec!["Namespace/a"]);
    }

    const PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-abc
  namespace: shop
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: u1, controller: true}]
spec:
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: web}]}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: web}]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-abc-1
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-abc, uid: u2, controller: true}]
spec: {containers: [{name: web, image: web}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-abc-2
  namespace: shop
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-abc, uid: u2, controller: true}]
spec: {containers: [{name: web, image: web}, {name: istio-proxy, image: proxyv2}]}
---
apiVersion: v1
kind: Pod
metadata: {name: done, namespace: shop}
spec: {containers: [{name: job, image: job}]}
status: {phase: Succeeded}
---
apiVersion: v1
kind: Pod
metadata: {name: opted-out, namespace: shop, labels: {sidecar.istio.io/inject: 'false'}}
spec: {containers: [{name: x, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: shop}
spec: {containers: [{name: x, image: x}]}
";

    #[test]
    fn pods_without_proxy_fire_mr102_once_per_workload() {
        let f = findings(PODS);
        assert_eq!(objects(&f, Code::MR102), vec!["Deployment/web", "Pod/bare"]);
        let web = f
            .iter()
            .find(|f| f.code == Code::MR102 && f.object.name == "web")
            .unwrap();
        assert!(
            web.message.contains("1 pod of Deployment/web"),
            "{}",
            web.message
        );
        assert!(
            web.message
                .contains("kubectl rollout restart deployment/web -n shop")
        );
    }

    #[test]
    fn ignore_annotation_suppresses() {
        let yaml = PODS.replace(
            "metadata: {name: bare, namespace: shop}",
            "metadata: {name: bare, namespace: shop, annotations: {meshreadiness.io/ignore: 'MR504, MR102'}}",
        );
        assert_eq!(
            objects(&findings(&yaml), Code::MR102),
            vec!["Deployment/web"]
        );
    }
}
