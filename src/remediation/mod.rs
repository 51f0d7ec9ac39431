//! The remediation planner: findings + snapshot + a MeshReadiness spec give the Istio objects that
//! mitigate the commonest 503 causes, or `Blocked` with the reason and the patch the user should
//! make instead (DESIGN.md section 4).
//!
//! Pure: no client, no clock. The caller passes `now` and the previous status; meshready's own
//! objects already in the cluster come from [`Snapshot::owned`]. The operator writes what
//! [`plan`] calls `Planned` (in `Apply` mode), deletes what [`stale`] lists, shows
//! [`Remediation::status`] and marks findings with [`mitigated_by`]; `analyze --plan` prints the
//! objects.
//!
//! One planner per kind:
//! - `permissive`: PeerAuthentication `meshreadiness-permissive` for MR301;
//! - `idle_timeout`: DestinationRule `<service>-meshreadiness` for MR601;
//! - `retries`: VirtualService `<service>-meshreadiness` for MR701.

mod idle_timeout;
mod owner;
mod patch;
mod permissive;
mod retries;

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

pub use owner::{MeshReadinessKey, owner_label_value, owner_of, owners};
pub use permissive::PERMISSIVE_NAME;

use crate::api::istio::{DestinationRule, PeerAuthentication, VirtualService};
use crate::api::k8s::{ObjectMeta, Time};
use crate::api::{MeshReadinessSpec, RemediationMode, RemediationState, RemediationStatus};
use crate::checks::{CheckRequest, Code, Context, Finding};
use crate::snapshot::{ObjectRef, Snapshot};

/// Appended to the Service name for the DestinationRule and the VirtualService.
pub const NAME_SUFFIX: &str = "-meshreadiness";

/// The kinds meshready may create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    PeerAuthentication,
    DestinationRule,
    VirtualService,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::DestinationRule => "DestinationRule",
            Kind::VirtualService => "VirtualService",
        }
    }

    /// The resource name `kubectl` takes.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::PeerAuthentication => "peerauthentication",
            Kind::DestinationRule => "destinationrule",
            Kind::VirtualService => "virtualservice",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exact object meshready would write, typed; serializes as the object itself.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum DesiredObject {
    PeerAuthentication(PeerAuthentication),
    DestinationRule(DestinationRule),
    VirtualService(VirtualService),
}

/// The generated Istio types have no `PartialEq`; their metadata and specs do.
impl PartialEq for DesiredObject {
    fn eq(&self, other: &Self) -> bool {
        use DesiredObject::*;
        match (self, other) {
            (PeerAuthentication(a), PeerAuthentication(b)) => {
                a.metadata == b.metadata && a.spec == b.spec
            }
            (DestinationRule(a), DestinationRule(b)) => {
                a.metadata == b.metadata && a.spec == b.spec
            }
            (VirtualService(a), VirtualService(b)) => a.metadata == b.metadata && a.spec == b.spec,
            _ => false,
        }
    }
}

impl DesiredObject {
    pub fn kind(&self) -> Kind {
        match self {
            DesiredObject::PeerAuthentication(_) => Kind::PeerAuthentication,
            DesiredObject::DestinationRule(_) => Kind::DestinationRule,
            DesiredObject::VirtualService(_) => Kind::VirtualService,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            DesiredObject::PeerAuthentication(o) => &o.metadata,
            DesiredObject::DestinationRule(o) => &o.metadata,
            DesiredObject::VirtualService(o) => &o.metadata,
        }
    }
}

/// A finding, by what identifies it: its code and the object it is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct FindingKey {
    pub code: Code,
    pub object: ObjectRef,
}

impl From<&Finding> for FindingKey {
    fn from(finding: &Finding) -> Self {
        FindingKey {
            code: finding.code,
            object: finding.object.clone(),
        }
    }
}

impl std::fmt::Display for FindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} {}/{}",
            self.code, self.object.kind, self.object.namespace, self.object.name
        )
    }
}

/// Why a remediation is in its state. Serialized as the variant's name, in CamelCase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Reason {
    /// `Planned` or `Applied`: it mitigates the findings the message names.
    MitigatesFindings,
    /// A user's PeerAuthentication decides the mode and outranks a namespace-wide one of ours.
    UserPolicyOutranks,
    /// A user's DestinationRule or VirtualService already applies to the host.
    UserObjectForHost,
    /// A user's object (without the managed-by label) has the name.
    NameTaken,
    /// The app's idle timeout is too short for any proxy timeout below it.
    TimeoutTooShort,
    /// Another MeshReadiness remediates in the namespace.
    OtherOwner,
    /// No MeshReadiness is known to remediate in the namespace.
    NoOwner,
    /// A PERMISSIVE policy outlived `permissiveMtlsTtl`.
    TtlPassed,
    /// The operator may not write it: the remediation role is not bound to it.
    Forbidden,
    /// The API server refused the object.
    Refused,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MitigatesFindings => "MitigatesFindings",
            Reason::UserPolicyOutranks => "UserPolicyOutranks",
            Reason::UserObjectForHost => "UserObjectForHost",
            Reason::NameTaken => "NameTaken",
            Reason::TimeoutTooShort => "TimeoutTooShort",
            Reason::OtherOwner => "OtherOwner",
            Reason::NoOwner => "NoOwner",
            Reason::TtlPassed => "TtlPassed",
            Reason::Forbidden => "Forbidden",
            Reason::Refused => "Refused",
        }
    }
}

/// One object meshready would create, and whether it may.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Remediation {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// `Planned` (to be written), `Blocked` (never written; the reason says what to do
    /// instead) or `Expired` (a PERMISSIVE policy past its TTL: to be deleted, not planned again).
    /// The planner never says `Applied`: that is the operator's word once it has written.
    pub state: RemediationState,
    /// Why, in one CamelCase word that alerts and scripts may match on.
    pub reason: Reason,
    /// Why, for people: the findings, the value chosen, or what blocks it and the exact patch.
    pub message: String,
    pub object: DesiredObject,
    /// The findings it addresses. They count as mitigated only while it is `Planned` or
    /// `Applied` (see [`mitigated_by`]).
    pub mitigates: Vec<FindingKey>,
    /// A PERMISSIVE policy's end: its creation (or `now`, before it exists) plus the TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

impl Remediation {
    /// The entry for `status.remediations`.
    pub fn status(&self) -> RemediationStatus {
        RemediationStatus {
            kind: self.kind.to_string(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            state: self.state,
            reason: self.reason.as_str().to_string(),
            message: self.message.clone(),
            object: None,
        }
    }

    /// `Kind/name`, as a finding's `mitigatedBy` names it.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    pub fn block(&mut self, reason: Reason, message: String) {
        self.state = RemediationState::Blocked;
        self.reason = reason;
        self.message = message;
        self.expires = None;
    }
}

/// The MeshReadiness being planned for.
#[derive(Clone, Copy, Debug)]
pub struct MeshReadinessRef<'a> {
    pub key: &'a MeshReadinessKey,
    /// Its `metadata.uid`, for the ownerReference of objects in its own namespace. Offline
    /// there is none, and objects get no ownerReference.
    pub uid: Option<&'a str>,
    pub spec: &'a MeshReadinessSpec,
}

/// Everything the planner reads.
#[derive(Clone, Copy, Debug)]
pub struct PlanRequest<'a> {
    /// The user's configuration, with meshready's own objects apart in `owned`.
    pub snapshot: &'a Snapshot,
    /// This MeshReadiness's findings, computed on the user's configuration alone.
    pub findings: &'a [Finding],
    /// The request those findings came from: the namespaces this MeshReadiness covers and the
    /// app idle timeouts of its spec.
    pub checks: &'a CheckRequest,
    pub mesh_readiness: MeshReadinessRef<'a>,
    /// Which MeshReadiness remediates in each namespace ([`owners`]). A namespace owned by
    /// another (or missing here) gets only `Blocked` entries from this one.
    pub owners: &'a BTreeMap<String, MeshReadinessKey>,
    /// For the PERMISSIVE TTL.
    pub now: Timestamp,
    /// This MeshReadiness's last `status.remediations`: a PERMISSIVE policy once `Expired`
    /// stays so, after the operator deleted it, until MR301 clears or the flag is turned off.
    pub previous: &'a [RemediationStatus],
}

impl<'a> PlanRequest<'a> {
    /// The findings of `code` in the namespaces this MeshReadiness covers.
    fn findings_of(&self, code: Code) -> impl Iterator<Item = &'a Finding> + '_ {
        self.findings.iter().filter(move |f| {
            f.code == code
                && self.checks.namespaces.contains(&f.object.namespace)
                && !self.snapshot.is_system_namespace(&f.object.namespace)
        })
    }

    /// Metadata for an object this MeshReadiness writes in `namespace`.
    fn metadata(&self, namespace: &str, name: &str) -> ObjectMeta {
        owner::metadata(self.mesh_readiness, namespace, name)
    }
}

/// The remediations this MeshReadiness calls for, sorted by namespace, kind and name. Nothing
/// when the mode is `Off`; `DryRun` and `Apply` plan the same objects (the operator decides
/// whether to write them). A kind is planned only when its flag is on.
pub fn plan(request: &PlanRequest) -> Vec<Remediation> {
    let settings = &request.mesh_readiness.spec.remediation;
    if settings.mode == RemediationMode::Off {
        return Vec::new();
    }
    let cx = Context::new(request.snapshot, request.checks);
    let mut out = Vec::new();
    if settings.permissive_mtls {
        out.extend(permissive::plan(request, &cx));
    }
    if settings.idle_timeout {
        out.extend(idle_timeout::plan(request, &cx));
    }
    if settings.reset_retries {
        out.extend(retries::plan(request, &cx));
    }
    for remediation in &mut out {
        finish(request, remediation);
    }
    out.sort_by(|a, b| (&a.namespace, a.kind, &a.name).cmp(&(&b.namespace, b.kind, &b.name)));
    out
}

/// The rules every kind shares: never over a user's object of the same name, only by the
/// namespace's owner, and the PERMISSIVE TTL.
fn finish(request: &PlanRequest, remediation: &mut Remediation) {
    if remediation.state != RemediationState::Planned {
        return;
    }
    if user_object_named(request.snapshot, remediation) {
        let (kind, ns, name) = (remediation.kind, &remediation.namespace, &remediation.name);
        let reason = format!(
            "{kind} {ns}/{name} already exists without the label {}={}: meshready never writes \
             an object it does not manage. Rename or delete yours, or make it do what this \
             one would: {}",
            crate::api::keys::MANAGED_BY,
            crate::api::keys::MANAGED_BY_VALUE,
            remediation.message,
        );
        remediation.block(Reason::NameTaken, reason);
        return;
    }
    let me = request.mesh_readiness.key;
    match request.owners.get(&remediation.namespace) {
        Some(owner) if owner == me => {}
        Some(owner) => {
            let reason = format!(
                "MeshReadiness {owner} remediates in namespace {} (where two cover a namespace, \
                 the one in that namespace does, else the oldest); this one only reports.",
                remediation.namespace
            );
            remediation.block(Reason::OtherOwner, reason);
            return;
        }
        None => {
            let reason = format!(
                "No MeshReadiness is known to remediate in namespace {}; nothing is written \
                 there.",
                remediation.namespace
            );
            remediation.block(Reason::NoOwner, reason);
            return;
        }
    }
    if remediation.kind == Kind::PeerAuthentication {
        permissive::apply_ttl(request, remediation);
    }
}

/// A user's object (without the managed-by label) with the remediation's kind, namespace and name.
fn user_object_named(snapshot: &Snapshot, remediation: &Remediation) -> bool {
    let same = |meta: &crate::snapshot::Meta| {
        meta.namespace == remediation.namespace && meta.name == remediation.name
    };
    match remediation.kind {
        Kind::PeerAuthentication => snapshot.peer_authentications.iter().any(|o| same(&o.meta)),
        Kind::DestinationRule => snapshot.destination_rules.iter().any(|o| same(&o.meta)),
        Kind::VirtualService => snapshot.virtual_services.iter().any(|o| same(&o.meta)),
    }
}

/// Which findings are mitigated, and by what (`Kind/name`, for a finding's `mitigatedBy`): the
/// findings of every `Planned` or `Applied` remediation.
///
/// The mode is the caller's decision: in `DryRun` nothing is written, so nothing is mitigated
/// and this must not be called; in `Apply` the operator should pass only the remediations it
/// has written (or confirmed present). `Blocked` and `Expired` ones never mitigate.
pub fn mitigated_by(remediations: &[Remediation]) -> BTreeMap<FindingKey, String> {
    remediations
        .iter()
        .filter(|r| {
            matches!(
                r.state,
                RemediationState::Planned | RemediationState::Applied
            )
        })
        .flat_map(|r| r.mitigates.iter().map(move |f| (f.clone(), r.reference())))
        .collect()
}

/// meshready's own objects (the managed-by label) that name `owner` in their owner label and that
/// no `Planned` remediation names: what the operator deletes. That covers `Expired` and
/// `Blocked` ones and kinds whose flag is off; with the mode `Off` (or `DryRun`, where nothing is
/// written) pass no remediations, and every object of `owner` is stale. Objects without the
/// managed-by label are never in the snapshot's `owned`, so never here.
pub fn stale(
    snapshot: &Snapshot,
    owner: &MeshReadinessKey,
    remediations: &[Remediation],
) -> Vec<ObjectRef> {
    let label = owner.label_value();
    let owned = &snapshot.owned;
    let metas = owned
        .peer_authentications
        .iter()
        .map(|o| (Kind::PeerAuthentication, &o.meta))
        .chain(
            owned
                .destination_rules
                .iter()
                .map(|o| (Kind::DestinationRule, &o.meta)),
        )
        .chain(
            owned
                .virtual_services
                .iter()
                .map(|o| (Kind::VirtualService, &o.meta)),
        );
    metas
        .filter(|(_, meta)| meta.labels.get(crate::api::keys::OWNER_LABEL) == Some(&label))
        .filter(|(kind, meta)| {
            !remediations.iter().any(|r| {
                r.state == RemediationState::Planned
                    && r.kind == *kind
                    && r.namespace == meta.namespace
                    && r.name == meta.name
            })
        })
        .map(|(kind, meta)| {
            ObjectRef::new(kind.as_str(), meta.namespace.clone(), meta.name.clone())
        })
        .collect()
}

/// `Deployment/a, Deployment/b` for a reason.
fn objects_phrase<'a>(findings: impl IntoIterator<Item = &'a FindingKey>) -> String {
    findings
        .into_iter()
        .map(|f| format!("{}/{}", f.object.kind, f.object.name))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod testing;

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::api::RemediationMode;

    #[test]
    fn mode_off_plans_nothing_dry_run_and_apply_plan_the_same() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let mut spec = all_kinds();
        spec.remediation.mode = RemediationMode::Off;
        assert!(plan_for(&yaml, &spec).is_empty());
        spec.remediation.mode = RemediationMode::DryRun;
        let dry_run = plan_for(&yaml, &spec);
        spec.remediation.mode = RemediationMode::Apply;
        let apply = plan_for(&yaml, &spec);
        assert_eq!(dry_run, apply);
        assert_eq!(
            names(&apply),
            [
                "Planned PeerAuthentication shop/meshreadiness-permissive",
                "Planned DestinationRule shop/cart-meshreadiness",
                "Planned VirtualService shop/cart-meshreadiness",
            ]
        );
    }

    #[test]
    fn each_kind_only_with_its_flag() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let base = {
            let mut spec = all_kinds();
            spec.remediation.permissive_mtls = false;
            spec.remediation.idle_timeout = false;
            spec.remediation.reset_retries = false;
            spec
        };
        assert!(plan_for(&yaml, &base).is_empty());
        let mut spec = base.clone();
        spec.remediation.permissive_mtls = true;
        assert_eq!(kinds(&plan_for(&yaml, &spec)), [Kind::PeerAuthentication]);
        let mut spec = base.clone();
        spec.remediation.idle_timeout = true;
        assert_eq!(kinds(&plan_for(&yaml, &spec)), [Kind::DestinationRule]);
        let mut spec = base;
        spec.remediation.reset_retries = true;
        assert_eq!(kinds(&plan_for(&yaml, &spec)), [Kind::VirtualService]);
    }

    #[test]
    fn every_object_is_labelled_and_owned_in_its_namespace() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let snapshot = snapshot_of(&yaml);
        let spec = all_kinds();
        let key = MeshReadinessKey::new("shop", "ready");
        let plan = plan_with(
            &snapshot,
            &spec,
            &key,
            Some("uid-1"),
            &owners_all(&snapshot, &key),
        );
        assert_eq!(plan.len(), 3);
        for r in &plan {
            let meta = r.object.metadata();
            let labels = meta.labels.clone().unwrap_or_default();
            assert_eq!(labels["app.kubernetes.io/managed-by"], "meshreadiness");
            assert_eq!(labels["meshreadiness.io/owner"], "shop.ready");
            assert_eq!(meta.namespace.as_deref(), Some("shop"));
            assert_eq!(meta.name.as_deref(), Some(r.name.as_str()));
            let refs = meta.owner_references.clone().unwrap_or_default();
            assert_eq!(refs.len(), 1, "{}", r.name);
            assert_eq!(refs[0].kind, "MeshReadiness");
            assert_eq!(refs[0].api_version, "meshreadiness.io/v1alpha1");
            assert_eq!(
                (refs[0].name.as_str(), refs[0].uid.as_str()),
                ("ready", "uid-1")
            );
            assert_eq!(refs[0].controller, Some(true));
        }
        // Without a uid (offline) there is no ownerReference.
        let plan = plan_with(&snapshot, &spec, &key, None, &owners_all(&snapshot, &key));
        assert!(
            plan.iter()
                .all(|r| r.object.metadata().owner_references.is_none())
        );
    }

    #[test]
    fn no_owner_reference_across_namespaces() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let snapshot = snapshot_of(&yaml);
        let key = MeshReadinessKey::new("meshreadiness-system", "fleet");
        let plan = plan_with(
            &snapshot,
            &all_kinds(),
            &key,
            Some("uid-1"),
            &owners_all(&snapshot, &key),
        );
        assert_eq!(plan.len(), 3);
        for r in &plan {
            let meta = r.object.metadata();
            assert!(meta.owner_references.is_none());
            let labels = meta.labels.clone().unwrap_or_default();
            assert_eq!(
                labels["meshreadiness.io/owner"],
                "meshreadiness-system.fleet"
            );
        }
    }

    #[test]
    fn only_the_owner_of_a_namespace_plans_there() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let snapshot = snapshot_of(&yaml);
        let me = MeshReadinessKey::new("meshreadiness-system", "fleet");
        let owner = MeshReadinessKey::new("shop", "ready");
        let plan = plan_with(
            &snapshot,
            &all_kinds(),
            &me,
            None,
            &owners_all(&snapshot, &owner),
        );
        assert_eq!(plan.len(), 3);
        for r in &plan {
            assert_eq!(r.state, RemediationState::Blocked);
            assert!(
                r.message.contains("MeshReadiness shop/ready remediates"),
                "{}",
                r.message
            );
        }
        assert!(mitigated_by(&plan).is_empty());
        // A namespace nobody is known to own: blocked too, never written twice.
        let plan = plan_with(&snapshot, &all_kinds(), &me, None, &BTreeMap::new());
        assert!(plan.iter().all(|r| r.state == RemediationState::Blocked));
    }

    #[test]
    fn a_user_object_with_the_same_name_blocks() {
        let mine = "
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart-meshreadiness, namespace: shop}
spec: {hosts: [other], http: [{route: [{destination: {host: other}}]}]}
";
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}{mine}");
        let plan = plan_for(&yaml, &all_kinds());
        let vs = find(&plan, Kind::VirtualService);
        assert_eq!(vs.state, RemediationState::Blocked);
        assert!(
            vs.message
                .contains("never writes an object it does not manage"),
            "{}",
            vs.message
        );
        // Labelled as ours, it is ours: planned (and the checks ignore it).
        let ours = mine.replace(
            "namespace: shop}",
            "namespace: shop, labels: {app.kubernetes.io/managed-by: meshreadiness}}",
        );
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}{ours}");
        let plan = plan_for(&yaml, &all_kinds());
        assert_eq!(
            find(&plan, Kind::VirtualService).state,
            RemediationState::Planned
        );
    }

    #[test]
    fn mitigated_by_names_planned_and_applied_only() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let mut plan = plan_for(&yaml, &all_kinds());
        let mitigated = mitigated_by(&plan);
        let by = |code: Code| {
            mitigated
                .iter()
                .find(|(k, _)| k.code == code)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            by(Code::MR601).as_deref(),
            Some("DestinationRule/cart-meshreadiness")
        );
        assert_eq!(
            by(Code::MR701).as_deref(),
            Some("VirtualService/cart-meshreadiness")
        );
        assert_eq!(
            by(Code::MR301).as_deref(),
            Some("PeerAuthentication/meshreadiness-permissive")
        );
        for r in &mut plan {
            r.state = RemediationState::Applied;
        }
        // MR301 on Deployments api and cart, MR601 and MR701 on Service cart.
        assert_eq!(mitigated_by(&plan).len(), 4);
        for (r, state) in plan
            .iter_mut()
            .zip([RemediationState::Blocked, RemediationState::Expired])
        {
            r.state = state;
        }
        assert_eq!(mitigated_by(&plan).len(), 1);
    }

    #[test]
    fn stale_objects_are_ours_and_not_planned() {
        let owned = |kind: &str, name: &str, owner: &str| {
            let (api, spec) = match kind {
                "VirtualService" => ("networking.istio.io/v1", "{hosts: [cart]}"),
                "DestinationRule" => ("networking.istio.io/v1", "{host: cart}"),
                _ => ("security.istio.io/v1", "{mtls: {mode: PERMISSIVE}}"),
            };
            format!(
                "---\napiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: shop, labels: {{app.kubernetes.io/managed-by: meshreadiness, meshreadiness.io/owner: {owner}}}}}\nspec: {spec}\n"
            )
        };
        let yaml = [
            SHOP_STRICT_FROM_MESH.to_string(),
            CART_WITH_TIMEOUT.to_string(),
            owned("VirtualService", "cart-meshreadiness", "shop.ready"),
            owned("DestinationRule", "old-meshreadiness", "shop.ready"),
            owned("DestinationRule", "cart-meshreadiness", "shop.other"),
        ]
        .concat();
        let snapshot = snapshot_of(&yaml);
        let key = MeshReadinessKey::new("shop", "ready");
        let mut spec = all_kinds();
        spec.remediation.idle_timeout = false;
        let plan = plan_with(&snapshot, &spec, &key, None, &owners_all(&snapshot, &key));
        let names = |refs: Vec<ObjectRef>| refs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        // The planned VirtualService stays; the old rule goes; another owner's is not ours.
        assert_eq!(
            names(stale(&snapshot, &key, &plan)),
            ["DestinationRule/old-meshreadiness"]
        );
        // Mode Off (or DryRun): every object of ours goes.
        assert_eq!(
            names(stale(&snapshot, &key, &[])),
            [
                "DestinationRule/old-meshreadiness",
                "VirtualService/cart-meshreadiness"
            ]
        );
    }

    #[test]
    fn status_entries_carry_kind_name_state_and_reason() {
        let yaml = format!("{SHOP_STRICT_FROM_MESH}{CART_WITH_TIMEOUT}");
        let plan = plan_for(&yaml, &all_kinds());
        let status = find(&plan, Kind::DestinationRule).status();
        assert_eq!(
            (
                status.kind.as_str(),
                status.namespace.as_str(),
                status.name.as_str()
            ),
            ("DestinationRule", "shop", "cart-meshreadiness")
        );
        assert_eq!(status.state, RemediationState::Planned);
        assert!(status.message.contains("MR601"), "{}", status.message);
    }
}
