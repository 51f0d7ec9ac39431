//! The controller: the only code that talks to the API server. Watches feed caches; every
//! decision is made by the pure core over a snapshot of them; status and Events are written only
//! when something changed.

mod backoff;
pub mod cache;
mod context;
mod error;
mod events;
pub mod leader;
pub mod metrics;
mod reconcile;
mod remediate;
mod server;
mod snapshots;
pub mod status;
pub mod stores;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

pub use context::Context;
pub use error::{Error, Result};
pub use stores::{IstioPresence, Stores};

use crate::api::MeshReadiness;
use crate::api::k8s::Namespace;
use crate::snapshot::{ISTIO_SYSTEM_NAMESPACE, Labels, scope};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where MeshReadiness objects may select other namespaces.
    pub operator_namespace: String,
    /// Changes within this window are folded into one reconcile.
    pub debounce: Duration,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; `None` serves nothing.
    pub admin_address: Option<std::net::SocketAddr>,
    /// Elect one writer among replicas; `None` writes at once (a single replica).
    pub leader_election: Option<leader::LeaderElection>,
}

/// Which MeshReadiness objects a change in a namespace concerns: those in it, and the
/// selector-bearing ones in the operator's namespace that cover it. A change in istio-system
/// (mesh config, mesh-wide policies) concerns all.
#[derive(Clone)]
struct Router {
    mesh_readiness: Store<MeshReadiness>,
    namespaces: Store<Namespace>,
    operator_namespace: String,
}

impl Router {
    fn for_namespace(&self, namespace: Option<&str>) -> Vec<ObjectRef<MeshReadiness>> {
        let all = self.mesh_readiness.state();
        let Some(namespace) = namespace else {
            return Vec::new();
        };
        if namespace == ISTIO_SYSTEM_NAMESPACE {
            return all
                .iter()
                .map(|mr| ObjectRef::from_obj(mr.as_ref()))
                .collect();
        }
        let labels: Labels = self
            .namespaces
            .get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default();
        all.iter()
            .filter(|mr| {
                mr.namespace().as_deref() == Some(namespace)
                    || (mr.namespace().as_deref() == Some(self.operator_namespace.as_str())
                        && mr
                            .spec
                            .namespace_selector
                            .as_ref()
                            .is_some_and(|s| scope::selects_namespace(s, namespace, &labels)))
            })
            .map(|mr| ObjectRef::from_obj(mr.as_ref()))
            .collect()
    }

    fn mapper<K: ResourceExt>(
        &self,
    ) -> impl Fn(K) -> Vec<ObjectRef<MeshReadiness>> + Send + Sync + 'static {
        let router = self.clone();
        move |object: K| router.for_namespace(object.namespace().as_deref())
    }
}

/// Where the operator runs: the service account's namespace in a pod.
const IN_CLUSTER_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
pub use crate::api::keys::DEFAULT_OPERATOR_NAMESPACE;

/// What `meshready controller` was asked for on its command line.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// Where a `namespaceSelector` is honoured; `None`: the pod's namespace, else the default.
    pub operator_namespace: Option<String>,
    pub debounce: Duration,
    pub admin_address: Option<std::net::SocketAddr>,
    pub leader_elect: bool,
    /// A kubeconfig file; `None`: `$KUBECONFIG`, `~/.kube/config`, else in-cluster.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// A kubeconfig context; `None`: the current one.
    pub context: Option<String>,
}

/// The client configuration: the kubeconfig file and context asked for, else the usual
/// inference (`$KUBECONFIG`, `~/.kube/config`, in-cluster).
async fn client_config(options: &ServeOptions) -> Result<kube::Config> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let selection = KubeConfigOptions {
        context: options.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&options.kubeconfig, &options.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(Error::Kubeconfig)?;
            kube::Config::from_custom_kubeconfig(file, &selection).await
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&selection).await,
        (None, None) => {
            return kube::Config::infer()
                .await
                .map_err(|e| Error::Connect(kube::Error::InferConfig(e)));
        }
    };
    config.map_err(Error::Kubeconfig)
}

/// `meshready controller`: connects and runs the controller until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> Result<()> {
    let client = client(client_config(&options).await?)?;
    let operator_namespace = options
        .operator_namespace
        .or_else(|| {
            std::fs::read_to_string(IN_CLUSTER_NAMESPACE_FILE)
                .ok()
                .map(|ns| ns.trim().to_string())
        })
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| DEFAULT_OPERATOR_NAMESPACE.to_string());
    let leader_election = options.leader_elect.then(|| leader::LeaderElection {
        namespace: operator_namespace.clone(),
        name: "meshready-leader".to_string(),
        identity: std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("meshready-{}", std::process::id())),
    });
    let options = Options {
        operator_namespace,
        debounce: options.debounce,
        admin_address: options.admin_address,
        leader_election,
    };
    run(client, options, metrics::Metrics::new()?, shutdown_signal()).await
}

/// Resolves on SIGTERM (how Kubernetes stops a pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

/// The operator's client: it names itself in the User-Agent, so audit logs tell its writes apart.
pub fn client(mut config: kube::Config) -> Result<Client> {
    let agent = concat!("meshready/", env!("CARGO_PKG_VERSION"));
    if let Ok(value) = http::HeaderValue::from_str(agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    Client::try_from(config).map_err(Error::Connect)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    options: Options,
    metrics: metrics::Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let (stores, mut streams) = Stores::new(&client);
    let streams_nodes = std::mem::replace(&mut streams.nodes, futures::stream::empty().boxed());
    // The MeshReadiness watch is built here rather than by `Controller::new` so that, like the
    // others, it retries on its own backoff and never hands errors to the controller.
    let (mesh_readiness, writer) = reflector::store();
    let own = watcher(
        Api::<MeshReadiness>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .backoff(backoff::WatchBackoff::default())
    .modify(|mr: &mut MeshReadiness| mr.metadata.managed_fields = None)
    .reflect(writer)
    .applied_objects()
    .filter_map(|change| std::future::ready(stores::retried_here(change)));
    let controller = Controller::for_stream(own, mesh_readiness)
        .with_config(ControllerConfig::default().debounce(options.debounce));
    let router = Router {
        mesh_readiness: controller.store(),
        namespaces: stores.namespaces.clone(),
        operator_namespace: options.operator_namespace.clone(),
    };
    let by_name = {
        let router = router.clone();
        // A Namespace's own changes (labels) concern the objects in it and those selecting it.
        move |ns: PartialObjectMeta<Namespace>| router.for_namespace(Some(&ns.name_any()))
    };
    let controller = controller
        .watches_stream(streams.namespaces, by_name)
        .watches_stream(streams.pods, router.mapper())
        .watches_stream(streams.replica_sets, router.mapper())
        .watches_stream(streams.deployments, router.mapper())
        .watches_stream(streams.stateful_sets, router.mapper())
        .watches_stream(streams.daemon_sets, router.mapper())
        .watches_stream(streams.jobs, router.mapper())
        .watches_stream(streams.cron_jobs, router.mapper())
        .watches_stream(streams.services, router.mapper())
        .watches_stream(streams.config_maps, router.mapper())
        .watches_stream(streams.peer_authentications, router.mapper())
        .watches_stream(streams.destination_rules, router.mapper())
        .watches_stream(streams.virtual_services, router.mapper())
        .watches_stream(streams.envoy_filters, router.mapper())
        .reconcile_all_on(streams.istio);
    let reporter = Reporter {
        controller: "meshready".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        mesh_readiness: router.mesh_readiness.clone(),
        snapshots: Default::default(),
        stores,
        metrics,
        operator_namespace: options.operator_namespace,
        reported: Default::default(),
        forbidden: Default::default(),
        synced: Default::default(),
        leader: Arc::new(AtomicBool::new(options.leader_election.is_none())),
    });
    let election = options.leader_election.map(|election| {
        let task = tokio::spawn(
            election
                .clone()
                .run(context.client.clone(), Arc::clone(&context.leader)),
        );
        (election, task)
    });
    // Nodes only feed their store; they trigger nothing.
    tokio::spawn(streams_nodes.for_each(|_| std::future::ready(())));
    let collector = server::StateCollector::new(Arc::clone(&context))?;
    context.metrics.registry.register(Box::new(collector))?;
    if let Some(address) = options.admin_address {
        server::serve(address, Arc::clone(&context)).await?;
    }
    let syncing = Arc::clone(&context);
    tokio::spawn(async move { syncing.sync().await });
    tracing::info!(operator_namespace = %context.operator_namespace, "controller starting");
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, Arc::clone(&context))
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, namespace = object.namespace.as_deref().unwrap_or_default(), "reconciled"),
                Err(error) => tracing::warn!(%error, "controller"),
            }
        })
        .await;
    // Every reconcile has finished: stop writing, and hand the lease over at once.
    if let Some((election, task)) = election {
        task.abort();
        context
            .leader
            .store(false, std::sync::atomic::Ordering::Release);
        election.release(context.client.clone()).await;
    }
    tracing::info!("controller stopped");
    Ok(())
}
