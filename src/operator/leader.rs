//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! writes. Every replica keeps its caches warm (and reports ready); only the holder reconciles.
//! A holder that cannot renew before its lease expires stops writing at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};

/// How long a lease holds without renewal; a standby takes over this long after the holder dies.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and how often a standby looks.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Where the lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    pub identity: String,
}

/// What to do with the lease as it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// It is ours: renew it.
    Renew,
    /// Someone else holds it until then.
    Wait,
}

/// The decision, pure: `lease` as read, `now`.
pub fn step(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else {
        return Step::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Step::Acquire,
        Some(holder) if holder == identity => Step::Renew,
        Some(_) => {
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            match spec.renew_time.as_ref() {
                Some(renewed) if renewed.0 + duration > now => Step::Wait,
                _ => Step::Acquire,
            }
        }
    }
}

impl LeaderElection {
    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours =
            previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
            ..LeaseSpec::default()
        }
    }

    /// One look at the lease: true when this replica holds it afterwards. Conflicts (another
    /// replica wrote first) and errors count as not holding.
    async fn try_hold(&self, api: &Api<Lease>) -> bool {
        let now = Timestamp::now();
        let current = match api.get_opt(&self.name).await {
            Ok(current) => current,
            Err(error) => {
                tracing::warn!(%error, "reading the leader lease");
                return false;
            }
        };
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        if step(spec, &self.identity, now) == Step::Wait {
            return false;
        }
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                // Optimistic concurrency: only one replica's write of this version wins.
                resource_version: current
                    .as_ref()
                    .and_then(|l| l.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(spec, now)),
        };
        let written = match current {
            None => api.create(&PostParams::default(), &lease).await,
            Some(_) => {
                api.replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 409 => false,
            Err(error) => {
                tracing::warn!(%error, "writing the leader lease");
                false
            }
        }
    }

    /// Gives the lease up, if this replica holds it, so a standby takes over at once instead of
    /// after the lease expires (client-go's ReleaseOnCancel). Called once writing has stopped.
    pub async fn release(&self, client: kube::Client) {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let Ok(Some(mut lease)) = api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.metadata.managed_fields = None;
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(identity = %self.identity, lease = %self.name, "released the leader lease")
            }
            Err(error) => tracing::warn!(%error, "releasing the leader lease"),
        }
    }

    /// Runs forever: acquires, renews, and keeps `leader` true exactly while the lease is ours
    /// and fresh. A renewal that fails past the lease's duration drops leadership at once.
    pub async fn run(self, client: kube::Client, leader: Arc<AtomicBool>) {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            if self.try_hold(&api).await {
                if !leader.swap(true, Ordering::AcqRel) {
                    tracing::info!(identity = %self.identity, lease = %self.name, "became leader");
                }
                last_renewed = Some(tokio::time::Instant::now());
            } else if leader.load(Ordering::Acquire) {
                let expired =
                    last_renewed.is_none_or(|t| t.elapsed() >= LEASE_DURATION - RETRY_PERIOD);
                let taken = !matches!(
                    api.get_opt(&self.name).await.ok().flatten().and_then(|l| l.spec).and_then(|s| s.holder_identity),
                    Some(holder) if holder == self.identity
                );
                if expired || taken {
                    leader.store(false, Ordering::Release);
                    tracing::warn!(identity = %self.identity, "lost the leader lease: not writing");
                }
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(15),
            renew_time: renewed.map(|s| MicroTime(Timestamp::from_second(s).unwrap())),
            ..LeaseSpec::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn free_expired_or_ours() {
        assert_eq!(step(None, "a", at(100)), Step::Acquire);
        assert_eq!(step(Some(&lease(None, None)), "a", at(100)), Step::Acquire);
        assert_eq!(
            step(Some(&lease(Some("a"), Some(99))), "a", at(100)),
            Step::Renew
        );
        assert_eq!(
            step(Some(&lease(Some("b"), Some(90))), "a", at(100)),
            Step::Wait
        );
        assert_eq!(
            step(Some(&lease(Some("b"), Some(80))), "a", at(100)),
            Step::Acquire,
            "expired 5s ago"
        );
        assert_eq!(
            step(Some(&lease(Some("b"), None)), "a", at(100)),
            Step::Acquire
        );
    }

    #[test]
    fn transitions_count_changes_of_holder() {
        let election = LeaderElection {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
        };
        let mut theirs = lease(Some("b"), Some(1));
        theirs.lease_transitions = Some(3);
        assert_eq!(
            election.spec(Some(&theirs), at(100)).lease_transitions,
            Some(4)
        );
        let mut ours = lease(Some("a"), Some(1));
        ours.lease_transitions = Some(4);
        assert_eq!(
            election.spec(Some(&ours), at(100)).lease_transitions,
            Some(4)
        );
    }
}
