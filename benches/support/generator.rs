//! A deterministic synthetic cluster: the same seed and sizes always give the same objects.
//!
//! Each namespace gets Services, one Deployment per Service with its ReplicaSet and running
//! Pods (with or without a sidecar), and a share of the Istio objects (PeerAuthentication,
//! DestinationRule, VirtualService). A known share of them carries a problem the checks find;
//! [`Planted`] counts them.

use serde_json::{Value, json};

/// How big a cluster to make, and from which seed.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub seed: u64,
    pub namespaces: usize,
    pub pods: usize,
    pub services: usize,
    pub istio_objects: usize,
}

impl Sizes {
    /// The "large" cluster: 2,000 namespaces, 50,000 pods, 10,000 services, 6,000
    /// Istio objects.
    pub const LARGE: Sizes = Sizes {
        seed: 1,
        namespaces: 2_000,
        pods: 50_000,
        services: 10_000,
        istio_objects: 6_000,
    };

    /// The same proportions, `namespaces` namespaces.
    pub fn scaled(namespaces: usize) -> Sizes {
        let large = Sizes::LARGE;
        Sizes {
            seed: large.seed,
            namespaces,
            pods: large.pods * namespaces / large.namespaces,
            services: large.services * namespaces / large.namespaces,
            istio_objects: large.istio_objects * namespaces / large.namespaces,
        }
    }
}

/// How many objects of each planted problem the cluster holds (what the checks should find).
#[derive(Clone, Debug, Default)]
pub struct Planted {
    pub unlabelled_namespaces: usize,
    pub conflicting_labels: usize,
    pub pods_without_sidecar_in_injected: usize,
    pub unnamed_ports: usize,
    pub http_declared_tcp: usize,
    pub node_images: usize,
    pub tcp_probes: usize,
    pub migrating_init_containers: usize,
    pub long_pre_stop: usize,
    pub strict_namespaces: usize,
    pub istio_mutual_to_plaintext: usize,
    pub retries_without_reset: usize,
    pub retries_non_idempotent: usize,
    pub undefined_subsets: usize,
}

/// One namespace's objects, as the API server or a manifest would hold them.
pub struct NamespaceObjects {
    pub name: String,
    pub objects: Vec<Value>,
}

/// The whole cluster: `istio-system` first, then every generated namespace.
pub struct Cluster {
    pub namespaces: Vec<NamespaceObjects>,
    pub planted: Planted,
}

impl Cluster {
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.namespaces.iter().flat_map(|n| n.objects.iter())
    }

    pub fn count(&self, kind: &str) -> usize {
        self.objects().filter(|o| o["kind"] == kind).count()
    }
}

/// splitmix64: small, fast and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    fn hex(&mut self, len: usize) -> String {
        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())] as char)
            .collect()
    }
}

/// `ns-0042`: zero-padded, so files and namespaces sort in generation order.
pub fn namespace_name(index: usize) -> String {
    format!("ns-{index:04}")
}

/// Items `0..total` dealt round-robin over `buckets`: how many land in `bucket`.
fn share(total: usize, buckets: usize, bucket: usize) -> usize {
    total / buckets + usize::from(bucket < total % buckets)
}

#[derive(Clone, Copy, PartialEq)]
enum Injection {
    Enabled,
    Revision,
    Conflicting,
    None,
}

/// Generates the cluster. Pure: no clock, no randomness but the seed.
pub fn generate(sizes: Sizes) -> Cluster {
    let mut rng = Rng::new(sizes.seed);
    let mut planted = Planted::default();
    let mut namespaces = vec![istio_system()];
    let n = sizes.namespaces.max(1);
    for i in 0..n {
        let name = namespace_name(i);
        let services = share(sizes.services, n, i);
        let pods = share(sizes.pods, n, i);
        let istio = share(sizes.istio_objects, n, i);
        namespaces.push(namespace(
            &mut rng,
            &mut planted,
            &name,
            services,
            pods,
            istio,
            n,
        ));
    }
    Cluster {
        namespaces,
        planted,
    }
}

fn istio_system() -> NamespaceObjects {
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system"},
            "data": {"mesh": "rootNamespace: istio-system\ndefaultConfig:\n  holdApplicationUntilProxyStarts: true\n"}
        }),
        json!({
            "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "default", "namespace": "istio-system"},
            "spec": {"mtls": {"mode": "PERMISSIVE"}}
        }),
    ];
    NamespaceObjects {
        name: "istio-system".to_string(),
        objects,
    }
}

fn namespace(
    rng: &mut Rng,
    planted: &mut Planted,
    name: &str,
    services: usize,
    pods: usize,
    istio: usize,
    namespace_count: usize,
) -> NamespaceObjects {
    let injection = match rng.below(100) {
        0..=79 => Injection::Enabled,
        80..=84 => Injection::Revision,
        85..=87 => Injection::Conflicting,
        _ => Injection::None,
    };
    let mut labels = serde_json::Map::new();
    labels.insert("team".into(), json!(format!("team-{}", rng.below(40))));
    match injection {
        Injection::Enabled => {
            labels.insert("istio-injection".into(), json!("enabled"));
        }
        Injection::Revision => {
            labels.insert("istio.io/rev".into(), json!("stable"));
        }
        Injection::Conflicting => {
            labels.insert("istio-injection".into(), json!("enabled"));
            labels.insert("istio.io/rev".into(), json!("stable"));
            planted.conflicting_labels += 1;
        }
        Injection::None => planted.unlabelled_namespaces += 1,
    }
    let injected = injection != Injection::None;
    let mut objects = vec![json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}
    })];
    let apps: Vec<String> = (0..services).map(|s| format!("svc-{s}")).collect();
    // Namespaces whose pods would reject plaintext: a namespace-wide STRICT policy.
    let pa_count = share(istio, 3, 0);
    let strict = pa_count > 0 && rng.chance(35);
    for (s, app) in apps.iter().enumerate() {
        let replicas = share(pods, services.max(1), s);
        objects.extend(application(rng, planted, name, app, replicas, injected));
    }
    if services == 0 {
        // Pods with nobody to select them still run.
        objects.extend(application(rng, planted, name, "batch", pods, injected));
        objects.pop(); // no Service for it
    }
    objects.extend(istio_objects(
        rng,
        planted,
        name,
        &apps,
        istio,
        strict,
        injected,
        namespace_count,
    ));
    NamespaceObjects {
        name: name.to_string(),
        objects,
    }
}

/// A Deployment, its ReplicaSet, `replicas` running Pods and the Service selecting them (last).
pub fn application(
    rng: &mut Rng,
    planted: &mut Planted,
    ns: &str,
    app: &str,
    replicas: usize,
    injected: bool,
) -> Vec<Value> {
    let node = rng.chance(10);
    let tcp_probe = rng.chance(5);
    let migrate = rng.chance(4);
    let pre_stop = rng.chance(4);
    let image = if node {
        planted.node_images += 1;
        "node:20-alpine".to_string()
    } else {
        format!(
            "registry.example.com/{ns}/{app}:1.{}.{}",
            rng.below(20),
            rng.below(10)
        )
    };
    let mut container = json!({
        "name": "app",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "DATABASE_URL", "value": format!("postgres://db.{ns}.svc.cluster.local:5432/{app}")},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
    });
    if tcp_probe {
        container["livenessProbe"] = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 10});
        planted.tcp_probes += 1;
    }
    if pre_stop {
        container["lifecycle"] = json!({"preStop": {"exec": {"command": ["sleep", "20"]}}});
        planted.long_pre_stop += 1;
    }
    let mut pod_spec = json!({"containers": [container], "terminationGracePeriodSeconds": 30});
    if migrate {
        pod_spec["initContainers"] = json!([{
            "name": "migrate", "image": "flyway/flyway:10", "args": ["migrate"],
        }]);
        planted.migrating_init_containers += 1;
    }
    let labels = json!({"app": app, "version": "v1"});
    let hash = rng.hex(10);
    let rs_name = format!("{app}-{hash}");
    let mut out = vec![
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": labels}, "spec": pod_spec},
            }
        }),
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name, "namespace": ns,
                "labels": {"app": app, "pod-template-hash": hash},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": app,
                    "uid": uid(rng), "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app, "pod-template-hash": hash}},
                "template": {"metadata": {"labels": {"app": app, "version": "v1", "pod-template-hash": hash}}, "spec": pod_spec},
            }
        }),
    ];
    // Pods created before the namespace was labelled run without their sidecar.
    let stale = injected && rng.chance(5);
    if stale {
        planted.pods_without_sidecar_in_injected += replicas;
    }
    for _ in 0..replicas {
        let mut spec = pod_spec.clone();
        if injected && !stale {
            spec["containers"]
                .as_array_mut()
                .expect("containers")
                .push(proxy_container());
        }
        spec["nodeName"] = json!(format!("node-{}", rng.below(200)));
        spec["serviceAccountName"] = json!("default");
        out.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": format!("{rs_name}-{}", rng.hex(5)), "namespace": ns,
                "labels": {"app": app, "version": "v1", "pod-template-hash": hash},
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                    "uid": uid(rng), "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": spec,
            "status": {"phase": "Running"},
        }));
    }
    // Ports: mostly named http; some unnamed (MR201), some tcp-named carrying HTTP (MR202).
    let port = match rng.below(100) {
        0..=6 => {
            planted.unnamed_ports += 1;
            json!({"port": 80, "targetPort": 8080})
        }
        7..=9 => {
            planted.http_declared_tcp += 1;
            json!({"name": "tcp-web", "port": 80, "targetPort": 8080})
        }
        _ => json!({"name": "http", "port": 80, "targetPort": 8080}),
    };
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
        "spec": {
            "selector": {"app": app},
            "ports": [port, {"name": "http-metrics", "port": 9090, "targetPort": 9090}],
        }
    }));
    out
}

fn proxy_container() -> Value {
    json!({
        "name": "istio-proxy",
        "image": "docker.io/istio/proxyv2:1.30.3",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
        "ports": [{"name": "http-envoy-prom", "containerPort": 15090}],
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}},
    })
}

fn uid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// `count` Istio objects for the namespace, a third each of PeerAuthentication,
/// DestinationRule and VirtualService.
#[allow(clippy::too_many_arguments)]
fn istio_objects(
    rng: &mut Rng,
    planted: &mut Planted,
    ns: &str,
    apps: &[String],
    count: usize,
    strict: bool,
    injected: bool,
    namespace_count: usize,
) -> Vec<Value> {
    let mut out = Vec::new();
    let host = |k: usize| {
        apps.get(k % apps.len().max(1))
            .cloned()
            .unwrap_or_else(|| "external".to_string())
    };
    for k in 0..count {
        let object = match k % 3 {
            0 => {
                let (name, mode) = if k == 0 {
                    ("default", if strict { "STRICT" } else { "PERMISSIVE" })
                } else {
                    // A workload policy for one app: stays within the namespace's mode.
                    ("app-policy", if strict { "STRICT" } else { "PERMISSIVE" })
                };
                if k == 0 && strict {
                    planted.strict_namespaces += 1;
                }
                let mut pa = json!({
                    "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                    "metadata": {"name": format!("{name}-{k}"), "namespace": ns},
                    "spec": {"mtls": {"mode": mode}},
                });
                if k != 0 {
                    pa["spec"]["selector"] = json!({"matchLabels": {"app": host(k)}});
                }
                pa
            }
            1 => {
                let app = host(k);
                let mutual = !injected && rng.chance(30);
                if mutual {
                    planted.istio_mutual_to_plaintext += 1;
                }
                let mut policy = json!({"connectionPool": {"http": {"idleTimeout": "30s"}}});
                if mutual {
                    policy["tls"] = json!({"mode": "ISTIO_MUTUAL"});
                }
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": {"name": format!("{app}-{k}"), "namespace": ns},
                    "spec": {
                        "host": app,
                        "trafficPolicy": policy,
                        "subsets": [{"name": "v1", "labels": {"version": "v1"}}],
                    }
                })
            }
            _ => {
                let app = host(k);
                let retries = match rng.below(100) {
                    0..=49 => Some(
                        json!({"attempts": 2, "retryOn": "connect-failure,refused-stream,reset", "perTryTimeout": "2s"}),
                    ),
                    50..=79 => {
                        planted.retries_without_reset += 1;
                        None
                    }
                    _ => {
                        planted.retries_non_idempotent += 1;
                        Some(
                            json!({"attempts": 3, "retryOn": "5xx,connect-failure,refused-stream"}),
                        )
                    }
                };
                let undefined = rng.chance(2);
                if undefined {
                    planted.undefined_subsets += 1;
                }
                let mut route = json!({
                    "route": [{"destination": {"host": app, "subset": if undefined { "v2" } else { "v1" }}}],
                    "timeout": "10s",
                });
                if let Some(retries) = retries {
                    route["retries"] = retries;
                }
                // Some routes send a share to a neighbour namespace's service.
                if rng.chance(5) && namespace_count > 1 {
                    let other = namespace_name(rng.below(namespace_count));
                    route["route"]
                        .as_array_mut()
                        .expect("route")
                        .push(json!({"destination": {"host": format!("svc-0.{other}.svc.cluster.local")}, "weight": 10}));
                    route["route"][0]["weight"] = json!(90);
                }
                json!({
                    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": format!("{app}-{k}"), "namespace": ns},
                    "spec": {"hosts": [app], "http": [route]},
                })
            }
        };
        out.push(object);
    }
    out
}

/// What the API server adds to an object it stores: uid, resourceVersion, creationTimestamp and
/// the managedFields of the client that created it, plus a running Pod's status. For measuring
/// what a watch cache holds.
pub fn as_served(object: &mut Value, rng: &mut Rng) {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let fields_v1 =
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:spec": {".": {}}});
    let last_applied = serde_json::to_string(&*object).unwrap_or_default();
    let meta = &mut object["metadata"];
    meta["uid"] = json!(uid(rng));
    meta["resourceVersion"] = json!(format!("{}", 100_000 + rng.below(900_000)));
    meta["creationTimestamp"] = json!("2026-11-30T09:14:07Z");
    meta["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": last_applied,
    });
    meta["managedFields"] = json!([
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": "2026-11-30T09:14:07Z", "fieldsType": "FieldsV1", "fieldsV1": fields_v1},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "subresource": "status",
         "time": "2026-11-30T09:14:09Z", "fieldsType": "FieldsV1",
         "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {}, "f:phase": {}, "f:podIP": {}}}},
    ]);
    match kind.as_str() {
        "Pod" => {
            let containers: Vec<Value> = object["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    json!({
                        "name": c["name"], "image": c["image"], "imageID": format!("{}@sha256:{}", c["image"].as_str().unwrap_or_default(), rng.hex(64)),
                        "containerID": format!("containerd://{}", rng.hex(64)),
                        "ready": true, "restartCount": 0, "started": true,
                        "state": {"running": {"startedAt": "2026-11-30T09:14:09Z"}},
                    })
                })
                .collect();
            let spec = &mut object["spec"];
            spec["dnsPolicy"] = json!("ClusterFirst");
            spec["restartPolicy"] = json!("Always");
            spec["schedulerName"] = json!("default-scheduler");
            spec["securityContext"] = json!({});
            spec["tolerations"] = json!([
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300},
            ]);
            spec["volumes"] = json!([{"name": "kube-api-access", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]}}]);
            object["status"] = json!({
                "phase": "Running",
                "hostIP": "10.0.3.17", "podIP": format!("10.244.{}.{}", rng.below(250), rng.below(250)),
                "qosClass": "Burstable", "startTime": "2026-11-30T09:14:07Z",
                "conditions": [
                    {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-30T09:14:07Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-30T09:14:12Z"},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-11-30T09:14:12Z"},
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-30T09:14:07Z"},
                ],
                "containerStatuses": containers,
            });
        }
        "Service" => {
            let ip = format!("10.96.{}.{}", rng.below(250), rng.below(250));
            let spec = &mut object["spec"];
            spec["clusterIP"] = json!(ip);
            spec["clusterIPs"] = json!([ip]);
            spec["type"] = json!("ClusterIP");
            spec["sessionAffinity"] = json!("None");
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
            spec["internalTrafficPolicy"] = json!("Cluster");
            for port in spec["ports"].as_array_mut().into_iter().flatten() {
                port["protocol"] = json!("TCP");
            }
            object["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
}
