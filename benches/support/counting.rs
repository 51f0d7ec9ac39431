//! A global allocator that counts what another one hands out: live bytes (benchmark 3's heap
//! per cached object) and bytes and allocations requested (what one analysis allocates).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

/// Counts the allocations made through `A`, by requested size (what the program asks for,
/// whatever the allocator rounds it to).
pub struct Counting<A>(pub A);

static COUNTING: AtomicBool = AtomicBool::new(true);
static LIVE: AtomicIsize = AtomicIsize::new(0);
static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// What was counted at one moment; two of them subtract to what happened between.
#[derive(Clone, Copy, Debug)]
pub struct Counts {
    /// Bytes allocated and not yet freed.
    pub live: isize,
    /// Bytes requested in all (a reallocation counts its new size).
    pub requested: usize,
    /// Allocations and reallocations.
    pub allocations: usize,
}

impl Counts {
    pub fn now() -> Counts {
        Counts {
            live: LIVE.load(Ordering::Relaxed),
            requested: REQUESTED.load(Ordering::Relaxed),
            allocations: ALLOCATIONS.load(Ordering::Relaxed),
        }
    }

    /// What was counted from `earlier` to `self`.
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            live: self.live - earlier.live,
            requested: self.requested - earlier.requested,
            allocations: self.allocations - earlier.allocations,
        }
    }
}

/// Counting on (the default) or off: off, an allocation costs one relaxed load more than the
/// allocator's own, so timed code can run uncounted; what is freed while off is not counted
/// either, so live bytes are exact only across a stretch counted whole.
pub fn set_counting(on: bool) {
    COUNTING.store(on, Ordering::Relaxed);
}

/// Counts an allocation (or reallocation) of `size` bytes that changes the live bytes by `live`.
fn counted(size: usize, live: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(live, Ordering::Relaxed);
        REQUESTED.fetch_add(size, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        counted(layout.size(), layout.size() as isize);
        unsafe { self.0.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { self.0.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        counted(new_size, new_size as isize - layout.size() as isize);
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}
