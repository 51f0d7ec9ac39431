//! Benchmark 3: heap per cached object in the operator's watch caches.
//!
//! Builds N Pods and N Services as the API server serves them (managedFields, kubectl's
//! last-applied annotation, a running Pod's status, a Service's cluster IPs), strips each as
//! the operator's reflectors do (`operator::stores::strip_pod`, `strip_service`), stores it in
//! a kube reflector store, and counts the live heap bytes the store holds, with a counting
//! global allocator. Also shown: the same objects unstripped, and with only managedFields and
//! last-applied dropped (what the caches held before).
//!
//! `cargo bench --bench heap -- [--objects N]` (default 5,000 of each).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use meshready::operator::stores::{strip_meta, strip_pod, strip_service};
use serde_json::Value;
use support::Flags;
use support::generator::{Planted, Rng, application, as_served};

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
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

/// Live bytes per object a reflector store holds after taking `objects`, each passed through
/// `strip` first (as `.modify()` does on the watch stream).
fn per_object<K>(objects: &[Value], strip: fn(&mut K)) -> f64
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
{
    let (store, mut writer): (Store<K>, _) = reflector::store();
    let before = live();
    for value in objects {
        let mut object: K = serde_json::from_value(value.clone()).expect("decodes");
        strip(&mut object);
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    let after = live();
    assert_eq!(store.state().len(), objects.len());
    drop(writer);
    drop(store);
    (after - before) as f64 / objects.len() as f64
}

fn no_strip<K>(_: &mut K) {}

fn main() {
    let flags = Flags::from_env();
    let count = flags.number("objects", if flags.benching() { 5_000 } else { 50 });
    let (pods, services) = served(count);
    let pod_json: usize = pods.iter().map(|p| p.to_string().len()).sum::<usize>() / count;
    let svc_json: usize = services.iter().map(|s| s.to_string().len()).sum::<usize>() / count;
    println!(
        "{count} Pods (JSON {pod_json} B each as served), {count} Services (JSON {svc_json} B each)"
    );
    let rows = [
        ("Pod, as served", per_object::<Pod>(&pods, no_strip), "-"),
        (
            "Pod, managedFields and last-applied dropped",
            per_object::<Pod>(&pods, strip_meta),
            "-",
        ),
        (
            "3. Pod, as the operator caches it",
            per_object::<Pod>(&pods, strip_pod),
            "<= 1536 B",
        ),
        (
            "Service, as served",
            per_object::<Service>(&services, no_strip),
            "-",
        ),
        (
            "Service, managedFields and last-applied dropped",
            per_object::<Service>(&services, strip_meta),
            "-",
        ),
        (
            "3. Service, as the operator caches it",
            per_object::<Service>(&services, strip_service),
            "<= 1024 B",
        ),
    ];
    for (name, bytes, goal) in rows {
        println!("{name:<52} {bytes:>9.0} B per object   goal {goal}");
    }
}
