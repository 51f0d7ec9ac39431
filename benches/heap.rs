//! Benchmark 3: heap per cached object in the operator's watch caches.
//!
//! Builds N Pods and N Services as the API server serves them (managedFields, kubectl's
//! last-applied annotation, a running Pod's status, a Service's cluster IPs), decodes each and
//! turns it into what the operator's reflectors cache (`operator::cache::cache_pod`,
//! `cache_service`: `snapshot::CachedPod`, `CachedService`, through the same
//! `operator::cache::project_event`), stores it in a kube reflector store, and counts the live
//! heap bytes the store holds, its map entries and keys included, with a counting global
//! allocator. Also shown: the k8s-openapi objects as served, and with only managedFields and
//! last-applied dropped; and the same Pods without their owner, which the caches keep whole
//! (rare: bare pods, and those of a controller whose template the snapshot does not read).
//!
//! `cargo bench --bench heap -- [--objects N]` (default 5,000 of each).

mod support;

use std::alloc::System;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::watcher;
use meshready::operator::cache::{cache_pod, cache_service, project_event, strip_meta};
use serde_json::Value;
use support::Flags;
use support::counting::{Counting, Counts};
use support::generator::{Planted, Rng, application, as_served};

#[global_allocator]
static ALLOCATOR: Counting<System> = Counting(System);

fn live() -> isize {
    Counts::now().live
}

/// Generated Pods and Services, as served.
fn served(count: usize) -> (Vec<Value>, Vec<Value>) {
    let mut rng = Rng::new(7);
    let mut planted = Planted::default();
    let (mut pods, mut services) = (Vec::new(), Vec::new());
    let mut app = 0;
    while pods.len() < count || services.len() < count {
        let ns = format!("ns-{:04}", app / 5);
        let objects = application(&mut rng, &mut planted, &ns, &format!("svc-{app}"), 5, true);
        app += 1;
        for mut object in objects {
            as_served(&mut object, &mut rng);
            match object["kind"].as_str() {
                Some("Pod") if pods.len() < count => pods.push(object),
                Some("Service") if services.len() < count => services.push(object),
                _ => {}
            }
        }
    }
    (pods, services)
}

/// Live bytes per object a reflector store holds after taking `objects`, each decoded as `K`
/// and passed through `cache` as the operator's watch streams do.
fn per_object<K, C>(objects: &[Value], cache: fn(K) -> C) -> f64
where
    K: serde::de::DeserializeOwned,
    C: Lookup<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer): (Store<C>, _) = reflector::store();
    let before = live();
    for value in objects {
        let object: K = serde_json::from_value(value.clone()).expect("decodes");
        writer.apply_watcher_event(&project_event(watcher::Event::Apply(object), cache));
    }
    let after = live();
    assert_eq!(store.state().len(), objects.len());
    drop(writer);
    drop(store);
    (after - before) as f64 / objects.len() as f64
}

fn unchanged<K>(object: K) -> K {
    object
}

fn main() {
    let flags = Flags::from_env();
    let count = flags.number("objects", if flags.benching() { 5_000 } else { 50 });
    let (pods, services) = served(count);
    let pod_json: usize = pods.iter().map(|p| p.to_string().len()).sum::<usize>() / count;
    let svc_json: usize = services.iter().map(|s| s.to_string().len()).sum::<usize>() / count;
    println!(
        "{count} Pods (JSON {pod_json} B each as served), {count} Services (JSON {svc_json} B each)"
    );
    // The rare case the caches keep whole: a pod whose controller carries no template the
    // snapshot reads (or a bare pod).
    let bare: Vec<Value> = pods
        .iter()
        .cloned()
        .map(|mut pod| {
            pod["metadata"]["ownerReferences"].take();
            pod
        })
        .collect();
    let rows = [
        (
            "Pod, as served",
            per_object::<Pod, _>(&pods, unchanged),
            "-",
        ),
        (
            "Pod, managedFields and last-applied dropped",
            per_object::<Pod, _>(&pods, strip_meta),
            "-",
        ),
        (
            "3. Pod, as the operator caches it",
            per_object(&pods, cache_pod),
            "<= 1536 B",
        ),
        (
            "bare Pod, as the operator caches it (kept whole)",
            per_object(&bare, cache_pod),
            "-",
        ),
        (
            "Service, as served",
            per_object::<Service, _>(&services, unchanged),
            "-",
        ),
        (
            "Service, managedFields and last-applied dropped",
            per_object::<Service, _>(&services, strip_meta),
            "-",
        ),
        (
            "3. Service, as the operator caches it",
            per_object(&services, cache_service),
            "<= 1024 B",
        ),
    ];
    for (name, bytes, goal) in rows {
        println!("{name:<52} {bytes:>9.0} B per object   goal {goal}");
    }
}
