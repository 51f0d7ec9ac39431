//! The remediation writer: the only code that creates, changes or deletes Istio objects.
//!
//! It writes what the pure planner calls `Planned` (in `Apply` mode) and deletes what it calls
//! stale. Every decision about *what* is the planner's; this module decides only *how*, with
//! three safety rules of its own:
//! - an object the caches show without meshready's managed-by label is never written or
//!   deleted; a delete carries the cached resourceVersion as a precondition, so an object
//!   changed since (say, relabelled by its owner) is left alone;
//! - `force` only on objects the caches show as ours; a first write is a plain apply, which
//!   the API server refuses (409) if someone else's object took the name meanwhile;
//! - an object outside the MeshReadiness's namespace (no ownerReference can reach it) is
//!   written only once the MeshReadiness carries meshready's finalizer, so its deletion
//!   cleans up.

use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef as StoreRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::istio::{DestinationRule, PeerAuthentication, VirtualService};
use crate::api::k8s::ObjectMeta;
use crate::api::{MeshReadiness, RemediationMode, RemediationState, keys};
use crate::operator::context::Context;
use crate::operator::error::{Error, Result};
use crate::remediation::{DesiredObject, Kind, MeshReadinessKey, Reason, Remediation};
use crate::snapshot::ObjectRef;

/// On a MeshReadiness whose objects live in other namespaces: removed once they are deleted.
pub const FINALIZER: &str = "meshreadiness.io/cleanup";

/// After a 403, writes of that kind in that namespace wait this long before trying again, so a
/// missing role costs one refused request per interval, not one per reconcile.
pub const FORBIDDEN_BACKOFF: Duration = Duration::from_secs(30);

/// Where a desired object stands in the watch caches.
#[derive(Debug, PartialEq)]
enum Live {
    Absent,
    /// Ours, with the desired labels, ownerReference and spec: nothing to write.
    UpToDate,
    /// Ours, but different.
    Outdated,
    /// Someone else's (no managed-by label): never touched.
    NotOurs,
}

fn is_ours(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(keys::MANAGED_BY))
        .is_some_and(|v| v == keys::MANAGED_BY_VALUE)
}

fn compare<K>(store: &Store<K>, desired: &ObjectMeta, same_spec: impl Fn(&K) -> bool) -> Live
where
    K: Resource<DynamicType = ()> + Clone,
{
    let (Some(name), Some(namespace)) = (&desired.name, &desired.namespace) else {
        return Live::Absent;
    };
    let Some(live) = store.get(&StoreRef::new(name).within(namespace)) else {
        return Live::Absent;
    };
    let meta = live.meta();
    if !is_ours(meta) {
        return Live::NotOurs;
    }
    let labels = meta.labels.clone().unwrap_or_default();
    let labels_kept = desired
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let live_owners = meta.owner_references.clone().unwrap_or_default();
    let owners_kept = desired
        .owner_references
        .iter()
        .flatten()
        .all(|o| live_owners.contains(o));
    if labels_kept && owners_kept && same_spec(&live) {
        Live::UpToDate
    } else {
        Live::Outdated
    }
}

fn live(ctx: &Context, desired: &DesiredObject) -> Live {
    let stores = &ctx.stores;
    match desired {
        DesiredObject::PeerAuthentication(o) => {
            compare(&stores.peer_authentications, &o.metadata, |l| {
                l.spec == o.spec
            })
        }
        DesiredObject::DestinationRule(o) => {
            compare(&stores.destination_rules, &o.metadata, |l| l.spec == o.spec)
        }
        DesiredObject::VirtualService(o) => {
            compare(&stores.virtual_services, &o.metadata, |l| l.spec == o.spec)
        }
    }
}

async fn apply_one<K>(ctx: &Context, object: &K, force: bool) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut params = PatchParams::apply(keys::FIELD_MANAGER);
    params.force = force;
    api.patch(&object.name_any(), &params, &Patch::Apply(object))
        .await?;
    Ok(())
}

async fn apply(ctx: &Context, desired: &DesiredObject, force: bool) -> Result<(), kube::Error> {
    let result = match desired {
        DesiredObject::PeerAuthentication(o) => apply_one(ctx, o, force).await,
        DesiredObject::DestinationRule(o) => apply_one(ctx, o, force).await,
        DesiredObject::VirtualService(o) => apply_one(ctx, o, force).await,
    };
    if result.is_ok() {
        ctx.metrics.write(desired.kind().as_str(), "apply");
    }
    result
}

/// The cached resourceVersion of one of our objects; `None` when absent or not ours.
fn ours_version(ctx: &Context, object: &ObjectRef) -> Option<String> {
    fn get<K: Resource<DynamicType = ()> + Clone>(
        store: &Store<K>,
        object: &ObjectRef,
    ) -> Option<String> {
        let live = store.get(&StoreRef::new(&object.name).within(&object.namespace))?;
        is_ours(live.meta())
            .then(|| live.meta().resource_version.clone())
            .flatten()
    }
    let stores = &ctx.stores;
    match object.kind.as_str() {
        "PeerAuthentication" => get(&stores.peer_authentications, object),
        "DestinationRule" => get(&stores.destination_rules, object),
        "VirtualService" => get(&stores.virtual_services, object),
        _ => None,
    }
}

async fn delete_one<K>(
    ctx: &Context,
    object: &ObjectRef,
    version: String,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            resource_version: Some(version),
            uid: None,
        }),
        ..DeleteParams::default()
    };
    api.delete(&object.name, &params).await?;
    Ok(())
}

/// Deletes one of our objects as the caches last saw it. Gone already, or changed since (the
/// precondition fails): nothing to do now; a change brings a new reconcile.
async fn delete(ctx: &Context, object: &ObjectRef) -> Result<(), kube::Error> {
    let Some(version) = ours_version(ctx, object) else {
        return Ok(());
    };
    let result = match object.kind.as_str() {
        "PeerAuthentication" => delete_one::<PeerAuthentication>(ctx, object, version).await,
        "DestinationRule" => delete_one::<DestinationRule>(ctx, object, version).await,
        "VirtualService" => delete_one::<VirtualService>(ctx, object, version).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => {
            ctx.metrics.write(&object.kind, "delete");
            tracing::info!(kind = %object.kind, namespace = %object.namespace, name = %object.name, "remediation removed");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Every object of ours that names `owner` in its owner label, from the caches.
pub fn owned_by(ctx: &Context, owner: &MeshReadinessKey) -> Vec<ObjectRef> {
    fn labelled<K: Resource<DynamicType = ()> + Clone>(
        store: &Store<K>,
        kind: Kind,
        label: &str,
    ) -> Vec<ObjectRef> {
        store
            .state()
            .iter()
            .filter(|o| is_ours(o.meta()))
            .filter(|o| {
                o.meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(keys::OWNER_LABEL))
                    .is_some_and(|v| v == label)
            })
            .map(|o| {
                ObjectRef::new(
                    kind.as_str(),
                    o.namespace().unwrap_or_default(),
                    o.name_any(),
                )
            })
            .collect()
    }
    let label = owner.label_value();
    let stores = &ctx.stores;
    let mut out = labelled(
        &stores.peer_authentications,
        Kind::PeerAuthentication,
        &label,
    );
    out.extend(labelled(
        &stores.destination_rules,
        Kind::DestinationRule,
        &label,
    ));
    out.extend(labelled(
        &stores.virtual_services,
        Kind::VirtualService,
        &label,
    ));
    out
}

fn has_finalizer(mr: &MeshReadiness) -> bool {
    mr.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds or removes meshready's finalizer by server-side apply: the finalizers list is a set, so
/// other controllers' entries are left as they are.
async fn set_finalizer(
    ctx: &Context,
    mr: &MeshReadiness,
    present: bool,
) -> Result<(), kube::Error> {
    let namespace = mr.namespace().unwrap_or_default();
    let api: Api<MeshReadiness> = Api::namespaced(ctx.client.clone(), &namespace);
    let finalizers: Vec<&str> = if present { vec![FINALIZER] } else { Vec::new() };
    let patch = serde_json::json!({
        "apiVersion": MeshReadiness::api_version(&()),
        "kind": MeshReadiness::kind(&()),
        "metadata": {"name": mr.name_any(), "finalizers": finalizers},
    });
    api.patch(
        &mr.name_any(),
        &PatchParams::apply(keys::FIELD_MANAGER),
        &Patch::Apply(&patch),
    )
    .await?;
    ctx.metrics.write("MeshReadiness", "patch");
    Ok(())
}

fn forbidden_message(r: &Remediation, verb: &str) -> String {
    format!(
        "meshready's ServiceAccount may not {verb} {} in {} (403 Forbidden): bind the ClusterRole \
         meshready-remediation to it (config/rbac/remediation-binding.yaml). It would: {}",
        r.kind.resource(),
        r.namespace,
        r.message
    )
}

/// Whether writes of this kind in this namespace were refused lately.
fn recently_forbidden(ctx: &Context, kind: Kind, namespace: &str) -> bool {
    let forbidden = ctx
        .forbidden
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    forbidden
        .get(&(kind, namespace.to_string()))
        .is_some_and(|at| at.elapsed() < FORBIDDEN_BACKOFF)
}

fn remember_forbidden(ctx: &Context, kind: Kind, namespace: &str) {
    let mut forbidden = ctx
        .forbidden
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    forbidden.insert((kind, namespace.to_string()), Instant::now());
}

fn object_name(r: &Remediation) -> String {
    format!("{} {}/{}", r.kind, r.namespace, r.name)
}

/// Brings the cluster to the plan: in `Apply` mode writes every `Planned` remediation (which
/// becomes `Applied`, or `Blocked` with reason `Forbidden`/`Refused`), then deletes `stale`. In
/// the other modes only deletes. Returns the remediations in their final state.
pub async fn sync(
    ctx: &Context,
    mr: &MeshReadiness,
    mut plan: Vec<Remediation>,
    stale: Vec<ObjectRef>,
) -> Result<Vec<Remediation>> {
    let home = mr.namespace().unwrap_or_default();
    let applying = mr.spec.remediation.mode == RemediationMode::Apply;
    let away = |ns: &str| ns != home;
    if applying {
        let wants_finalizer = plan
            .iter()
            .any(|r| r.state == RemediationState::Planned && away(&r.namespace));
        if wants_finalizer
            && !has_finalizer(mr)
            && let Err(error) = set_finalizer(ctx, mr, true).await
        {
            let forbidden = matches!(&error, kube::Error::Api(s) if s.code == 403);
            if !forbidden {
                return Err(Error::Remediate {
                    object: format!("MeshReadiness {home}/{}", mr.name_any()),
                    source: error,
                });
            }
            // Without the finalizer an object elsewhere would outlive its MeshReadiness.
            for r in plan
                .iter_mut()
                .filter(|r| r.state == RemediationState::Planned && away(&r.namespace))
            {
                let message =
                    forbidden_message(r, "patch meshreadinesses (its finalizer) nor create");
                r.block(Reason::Forbidden, message);
            }
        }
        for r in plan
            .iter_mut()
            .filter(|r| r.state == RemediationState::Planned)
        {
            write(ctx, r).await?;
        }
    }
    let mut remaining_away = plan
        .iter()
        .any(|r| r.state == RemediationState::Applied && away(&r.namespace));
    for object in &stale {
        if let Err(error) = delete(ctx, object).await {
            remaining_away |= away(&object.namespace);
            if matches!(&error, kube::Error::Api(s) if s.code == 403) {
                tracing::warn!(kind = %object.kind, namespace = %object.namespace, name = %object.name, "may not delete a stale remediation: bind the ClusterRole meshready-remediation");
                continue;
            }
            return Err(Error::Remediate {
                object: format!("{} {}/{}", object.kind, object.namespace, object.name),
                source: error,
            });
        }
    }
    if has_finalizer(mr) && !remaining_away {
        release(ctx, mr).await?;
    }
    Ok(plan)
}

/// Writes one `Planned` remediation and records how it went.
async fn write(ctx: &Context, r: &mut Remediation) -> Result<()> {
    let force = match live(ctx, &r.object) {
        Live::UpToDate => {
            r.state = RemediationState::Applied;
            return Ok(());
        }
        // The planner blocks names that users hold; the caches may have caught up since.
        Live::NotOurs => {
            let message = format!(
                "{} exists without the label {}={}: meshready never writes an object it does not manage.",
                object_name(r),
                keys::MANAGED_BY,
                keys::MANAGED_BY_VALUE
            );
            r.block(Reason::NameTaken, message);
            return Ok(());
        }
        Live::Outdated => true,
        Live::Absent => false,
    };
    if recently_forbidden(ctx, r.kind, &r.namespace) {
        let message = forbidden_message(r, "create");
        r.block(Reason::Forbidden, message);
        return Ok(());
    }
    match apply(ctx, &r.object, force).await {
        Ok(()) => {
            tracing::info!(kind = %r.kind, namespace = %r.namespace, name = %r.name, "remediation applied");
            r.state = RemediationState::Applied;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 403 => {
            remember_forbidden(ctx, r.kind, &r.namespace);
            let message = forbidden_message(r, "create");
            r.block(Reason::Forbidden, message);
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            let message = format!(
                "The API server refused {}: {}. This is a meshready bug; please report it.",
                object_name(r),
                status.message
            );
            r.block(Reason::Refused, message);
            Ok(())
        }
        Err(source) => Err(Error::Remediate {
            object: object_name(r),
            source,
        }),
    }
}

/// Drops meshready's finalizer, if the MeshReadiness still carries it.
async fn release(ctx: &Context, mr: &MeshReadiness) -> Result<()> {
    match set_finalizer(ctx, mr, false).await {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Remediate {
            object: format!(
                "MeshReadiness {}/{}",
                mr.namespace().unwrap_or_default(),
                mr.name_any()
            ),
            source,
        }),
    }
}

/// A MeshReadiness being deleted: deletes every object it owns, then lets it go.
pub async fn finalize(ctx: &Context, mr: &MeshReadiness) -> Result<()> {
    let key = MeshReadinessKey::new(mr.namespace().unwrap_or_default(), mr.name_any());
    for object in owned_by(ctx, &key) {
        delete(ctx, &object)
            .await
            .map_err(|source| Error::Remediate {
                object: format!("{} {}/{}", object.kind, object.namespace, object.name),
                source,
            })?;
    }
    if has_finalizer(mr) {
        release(ctx, mr).await?;
    }
    Ok(())
}
