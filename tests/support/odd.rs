//! Odd but legal objects: what a real cluster holds and a careless analyzer trips on. Shared by
//! the offline test (tests/cli.rs) and the operator's (tests/operator.rs).

use std::fmt::Write;

/// A namespace `ns` with: a 200 KiB annotation, non-ASCII annotations and names, a Service with
/// 2,000 ports, a Deployment with 300 container ports, a VirtualService with 400 routes, and,
/// with `unknown_fields`, Istio objects with fields this Istio version does not define (fine in
/// manifests for a newer Istio; the API server's schema refuses them).
pub fn odd_namespace(ns: &str, unknown_fields: bool) -> String {
    let mut out = String::new();
    let huge = "x".repeat(200 * 1024);
    writeln!(
        out,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels: {{istio-injection: enabled, team: caf-e9}}\n  annotations:\n    note: \"Équipe café — 日本語 ✓\"\n    huge: \"{huge}\""
    )
    .unwrap();
    let ports: String = (0..2000)
        .map(|i| {
            format!(
                "  - {{name: p{i}, port: {}, targetPort: {}}}\n",
                10000 + i,
                10000 + i
            )
        })
        .collect();
    writeln!(
        out,
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: many-ports\n  namespace: {ns}\n  annotations: {{description: \"Сервис с множеством портов\"}}\nspec:\n  selector: {{app: many}}\n  ports:\n{ports}"
    )
    .unwrap();
    let container_ports: String = (0..300)
        .map(|i| format!("          - {{containerPort: {}}}\n", 10000 + i))
        .collect();
    writeln!(
        out,
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: many, namespace: {ns}}}\nspec:\n  selector: {{matchLabels: {{app: many}}}}\n  template:\n    metadata:\n      labels: {{app: many}}\n      annotations: {{owner: \"Zoë Ødegård\"}}\n    spec:\n      containers:\n        - name: app\n          image: registry.example/many:1\n          env: [{{name: GREETING, value: \"こんにちは\"}}]\n          ports:\n{container_ports}"
    )
    .unwrap();
    let routes: String = (0..400)
        .map(|i| {
            format!(
                "  - match: [{{uri: {{prefix: /r{i}}}, method: {{exact: GET}}}}]\n    route: [{{destination: {{host: many-ports, port: {{number: {}}}}}}}]\n    retries: {{attempts: 2, retryOn: \"connect-failure,refused-stream,reset\"}}\n",
                10000 + i
            )
        })
        .collect();
    writeln!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: many-routes, namespace: {ns}}}\nspec:\n  hosts: [many-ports]\n  http:\n{routes}"
    )
    .unwrap();
    let (future_spec, future_policy, future_mtls) = if unknown_fields {
        (
            "\n  futureField: {enabled: true}",
            "futurePolicy: 3, ",
            "\n  somethingNew: [1, 2, 3]",
        )
    } else {
        ("", "", "")
    };
    writeln!(
        out,
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: future, namespace: {ns}}}\nspec:\n  host: many-ports{future_spec}\n  trafficPolicy: {{{future_policy}tls: {{mode: ISTIO_MUTUAL}}}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: future, namespace: {ns}}}\nspec:\n  mtls: {{mode: PERMISSIVE}}{future_mtls}"
    )
    .unwrap();
    out
}
