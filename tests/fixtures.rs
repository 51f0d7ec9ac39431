//! Istio's own analyzer inputs and published real-world manifests, analyzed end to end through
//! the CLI (`meshready analyze -o json`), with the findings DESIGN.md implies for them.
//! Skipped with a message when `../shared/fixtures` is absent (a user's clone); CI always has it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: {} is absent (CI always has it)", dir.display());
        None
    }
}

/// `(code, severity, "namespace/Kind/name")` of every finding for the given fixture paths.
fn analyze(paths: &[&str]) -> Option<Vec<(String, String, String)>> {
    let dir = fixtures()?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshready"));
    command.args(["analyze", "-o", "json", "--fail-on", "never"]);
    for path in paths {
        command.arg("-f").arg(dir.join(path));
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{paths:?}: exit {:?}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let o = &f["object"];
                (
                    f["code"].as_str().unwrap().to_string(),
                    f["severity"].as_str().unwrap().to_string(),
                    format!(
                        "{}/{}/{}",
                        o["namespace"].as_str().unwrap(),
                        o["kind"].as_str().unwrap(),
                        o["name"].as_str().unwrap()
                    ),
                )
            })
            .collect(),
    )
}

fn with_code(findings: &[(String, String, String)], code: &str) -> BTreeSet<String> {
    findings
        .iter()
        .filter(|f| f.0 == code)
        .map(|f| f.2.clone())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn blocking(findings: &[(String, String, String)]) -> Vec<&(String, String, String)> {
    findings.iter().filter(|f| f.1 != "Info").collect()
}

#[test]
fn every_fixture_is_read_without_bad_input() {
    let Some(f) = analyze(&["istio-analyzer-testdata", "realworld"]) else {
        return;
    };
    assert!(!f.is_empty());
}

#[test]
fn injection_inputs() {
    let Some(f) = analyze(&["istio-analyzer-testdata/injection.yaml"]) else {
        return;
    };
    // Only the pod that should have been injected and was not; not the opted-out, hostNetwork
    // or istio-system pods.
    assert_eq!(with_code(&f, "MR102"), set(&["default/Pod/noninjectedpod"]));
    assert_eq!(
        with_code(&f, "MR103"),
        set(&[
            "busted/Namespace/busted",
            "multi-ns-1/Namespace/multi-ns-1",
            "not-conflict-ns-2/Namespace/not-conflict-ns-2"
        ])
    );
    // Ambient namespaces are in the mesh without sidecars: no MR101 for `ambient`.
    assert_eq!(
        with_code(&f, "MR101"),
        set(&[
            "bar/Namespace/bar",
            "foo/Namespace/foo",
            "not-conflict-ns-1/Namespace/not-conflict-ns-1",
            "not-conflict-ns-2/Namespace/not-conflict-ns-2"
        ])
    );
}

#[test]
fn port_name_inputs() {
    let Some(f) = analyze(&["istio-analyzer-testdata/service-no-port-name.yaml"]) else {
        return;
    };
    assert_eq!(
        with_code(&f, "MR201"),
        set(&[
            "my-namespace1/Service/my-service1",
            "my-namespace2/Service/my-service2"
        ])
    );
    let Some(f) = analyze(&["istio-analyzer-testdata/service-no-port-name-system-namespace.yaml"])
    else {
        return;
    };
    assert!(f.is_empty(), "system namespaces are not checked: {f:?}");
    let Some(f) = analyze(&["istio-analyzer-testdata/service-port-name.yaml"]) else {
        return;
    };
    assert!(
        with_code(&f, "MR201").is_empty(),
        "named ports and Istio's own gateways: {f:?}"
    );
    let Some(f) =
        analyze(&["istio-analyzer-testdata/incorrect-port-name-external-name-service-type.yaml"])
    else {
        return;
    };
    assert_eq!(
        with_code(&f, "MR201"),
        set(&["nginx-ns/Service/nginx", "nginx-ns2/Service/nginx-svc2"])
    );
    let Some(f) =
        analyze(&["istio-analyzer-testdata/correct-port-name-external-name-service-type.yaml"])
    else {
        return;
    };
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn services_sharing_pods_inputs() {
    let Some(f) = analyze(&["istio-analyzer-testdata/deployment-multi-service.yaml"]) else {
        return;
    };
    // Not deployment-out-mesh (it opts out of injection), not reviews-v2 (two ports, two Services).
    assert_eq!(
        with_code(&f, "MR203"),
        set(&[
            "bookinfo/Deployment/conflicting-ports",
            "bookinfo/Deployment/multiple-svc-multiple-prot",
            "bookinfo/Deployment/multiple-without-port"
        ])
    );
    let Some(f) = analyze(&["istio-analyzer-testdata/deployment-multi-service-different-ns.yaml"])
    else {
        return;
    };
    assert!(
        with_code(&f, "MR203").is_empty(),
        "Services select only their own namespace: {f:?}"
    );
    let Some(f) = analyze(&["istio-analyzer-testdata/deployment-service-no-selector.yaml"]) else {
        return;
    };
    assert!(blocking(&f).is_empty(), "{f:?}");
}

#[test]
fn proxy_uid_inputs() {
    for (file, object) in [
        ("pod-sec-uid.yaml", "default/Pod/pod-sec-uid"),
        ("pod-con-sec-uid.yaml", "default/Pod/con-sec-uid"),
        (
            "deployment-pod-sec-uid.yaml",
            "default/Deployment/deploy-pod-sec-uid",
        ),
        (
            "deployment-con-sec-uid.yaml",
            "default/Deployment/deploy-con-sec-uid",
        ),
    ] {
        let Some(f) = analyze(&[&format!("istio-analyzer-testdata/{file}")]) else {
            return;
        };
        assert_eq!(with_code(&f, "MR802"), set(&[object]), "{file}");
    }
}

#[test]
fn misplaced_annotation_input() {
    let Some(f) = analyze(&["istio-analyzer-testdata/misannotated.yaml"]) else {
        return;
    };
    assert_eq!(
        with_code(&f, "MR403"),
        set(&["default/Deployment/fortio-deploy"])
    );
}

#[test]
fn routing_inputs() {
    let Some(f) = analyze(&["istio-analyzer-testdata/virtualservice_destinationrules.yaml"]) else {
        return;
    };
    assert_eq!(
        with_code(&f, "MR901"),
        set(&["default/VirtualService/reviews-bogussubset"])
    );
    let Some(f) =
        analyze(&["istio-analyzer-testdata/virtualservice_conflictingmeshgatewayhosts.yaml"])
    else {
        return;
    };
    // Each VirtualService beyond the oldest (here by namespace, then name: no timestamps) for a
    // host bound to the mesh gateway; bar/reviews is on an ingress gateway only.
    assert_eq!(
        with_code(&f, "MR902"),
        set(&[
            "foo/VirtualService/productpage",
            "foo/VirtualService/ratings",
            "team2/VirtualService/ratings",
            "team4/VirtualService/ratings"
        ])
    );
}

#[test]
fn bookinfo_is_ready_apart_from_infos() {
    let Some(f) = analyze(&["realworld/bookinfo"]) else {
        return;
    };
    assert!(
        blocking(&f).is_empty(),
        "subsets are defined by destination-rule-all.yaml: {f:?}"
    );
    assert_eq!(
        with_code(&f, "MR701"),
        set(&[
            "default/Service/details",
            "default/Service/productpage",
            "default/Service/ratings",
            "default/Service/reviews"
        ])
    );
    assert_eq!(
        with_code(&f, "MR504").len(),
        6,
        "no readiness probes in bookinfo"
    );
    let Some(alone) = analyze(&["realworld/bookinfo/virtual-service-all-v1.yaml"]) else {
        return;
    };
    assert_eq!(
        with_code(&alone, "MR901").len(),
        4,
        "without the DestinationRules, every v1 subset is undefined"
    );
}

#[test]
fn online_boutique() {
    let Some(f) = analyze(&["realworld/online-boutique"]) else {
        return;
    };
    // The load generator's init container waits for the frontend with wget before its proxy runs.
    assert_eq!(
        blocking(&f)
            .iter()
            .map(|b| (b.0.as_str(), b.2.as_str()))
            .collect::<Vec<_>>(),
        [("MR501", "default/Deployment/loadgenerator")]
    );
    // gRPC and HTTP Services without reset retries.
    assert_eq!(with_code(&f, "MR701").len(), 11);
}

#[test]
fn podinfo() {
    let Some(f) = analyze(&["realworld/podinfo-kustomize"]) else {
        return;
    };
    assert!(blocking(&f).is_empty(), "{f:?}");
    let Some(f) = analyze(&["realworld/podinfo-webapp"]) else {
        return;
    };
    assert!(blocking(&f).is_empty(), "{f:?}");
    assert_eq!(
        with_code(&f, "MR101"),
        set(&["webapp/Namespace/webapp"]),
        "its Namespace has no injection label"
    );
}
