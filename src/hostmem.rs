//! Host memory for large random-access structures (the CPU backend's buffers, cache
//! directories, the lookahead planner's row maps) and the prefetch hint their readers use.
//!
//! Allocations of 2 MiB and more through [`HugePages`] are 2 MiB-aligned and advised to use
//! transparent huge pages, so random probes stop missing the TLB on every access (a page walk
//! under virtualisation costs several memory reads; 2 MiB pages cut those misses by 512×).
#![allow(unsafe_code)] // An allocator, madvise(2), zero-filled slices of Zeroable types, a hint.

use allocator_api2::alloc::{AllocError, Allocator, Global};
use std::alloc::Layout;
use std::ptr::NonNull;

/// Allocations from this size up use huge pages.
const HUGE: usize = 2 << 20;

/// An allocator for hash maps and vectors probed at random (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePages;

/// The layout actually used for a request of `layout`.
fn huge_layout(layout: Layout) -> Option<Layout> {
    (layout.size() >= HUGE)
        .then(|| Layout::from_size_align(layout.size(), layout.align().max(HUGE)).ok())
        .flatten()
}

/// Allocates a large block for `layout` with `alloc` (the global allocator's `alloc` or
/// `alloc_zeroed`) at the stricter `big` alignment, and advises huge pages for it.
fn allocate_huge(
    layout: Layout,
    big: Layout,
    alloc: unsafe fn(Layout) -> *mut u8,
) -> Result<NonNull<[u8]>, AllocError> {
    // SAFETY: `big` has a non-zero size (at least HUGE). Zeroed large blocks come straight from
    // the kernel, so pages nothing touches cost nothing.
    let ptr = NonNull::new(unsafe { alloc(big) }).ok_or(AllocError)?;
    #[cfg(target_os = "linux")]
    // SAFETY: the block [ptr, ptr + size) was just allocated and is 2 MiB-aligned; the advice
    // only changes how the kernel backs it, and a refusal is harmless.
    unsafe {
        libc::madvise(
            ptr.as_ptr().cast(),
            big.size() & !(HUGE - 1),
            libc::MADV_HUGEPAGE,
        );
    }
    Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
}

// SAFETY: large blocks come from the global allocator with a stricter alignment and are freed
// with that same layout (recomputed from the request's layout, which callers must pass back
// unchanged); small blocks are delegated to `Global` unchanged. Blocks stay valid until freed.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match huge_layout(layout) {
            Some(big) => allocate_huge(layout, big, std::alloc::alloc),
            None => Global.allocate(layout),
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match huge_layout(layout) {
            Some(big) => allocate_huge(layout, big, std::alloc::alloc_zeroed),
            None => Global.allocate_zeroed(layout),
        }
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        match huge_layout(layout) {
            // SAFETY: allocated by `allocate` above with exactly `big`.
            Some(big) => unsafe { std::alloc::dealloc(ptr.as_ptr(), big) },
            // SAFETY: allocated by `Global` with `layout`.
            None => unsafe { Global.deallocate(ptr, layout) },
        }
    }
}

/// A hash map whose table lives in [`HugePages`].
pub type HugeMap<K, V> = hashbrown::HashMap<K, V, hashbrown::DefaultHashBuilder, HugePages>;

/// An empty [`HugeMap`] with room for `capacity` entries.
pub fn huge_map<K, V>(capacity: usize) -> HugeMap<K, V> {
    hashbrown::HashMap::with_capacity_and_hasher_in(capacity, Default::default(), HugePages)
}

/// A boxed slice in [`HugePages`].
pub type HugeSlice<T> = allocator_api2::boxed::Box<[T], HugePages>;

/// A slice of `len` all-zero values in [`HugePages`] (aborts if memory is exhausted, like `vec!`).
pub fn zeroed_slice<T: bytemuck::Zeroable>(len: usize) -> HugeSlice<T> {
    let zeroed = allocator_api2::boxed::Box::<[T], HugePages>::new_zeroed_slice_in(len, HugePages);
    // SAFETY: `T: Zeroable` promises that all-zero bytes are a valid `T`.
    unsafe { zeroed.assume_init() }
}

/// [`zeroed_slice`], or `None` when the memory cannot be had. Large blocks come zeroed from
/// the kernel, so pages nothing touches cost nothing.
pub fn try_zeroed_slice<T: bytemuck::Zeroable>(len: usize) -> Option<HugeSlice<T>> {
    let zeroed =
        allocator_api2::boxed::Box::<[T], HugePages>::try_new_zeroed_slice_in(len, HugePages)
            .ok()?;
    // SAFETY: `T: Zeroable` promises that all-zero bytes are a valid `T`.
    Some(unsafe { zeroed.assume_init() })
}

/// Asks the CPU to start loading every cache line of `data` (a row about to be read or written
/// at a random address), so loops over scattered rows overlap their memory latency instead of
/// paying it one row at a time. The lines go to L2 rather than L1: the L2 tracks more
/// outstanding misses, and random row reads are bound by how many misses are in flight.
///
/// A hint: no effect on results, none off x86_64. `#[inline(always)]`, so inside a
/// `#[multiversion]` CPU kernel it compiles with that kernel's target features.
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let (p, n) = (data.as_ptr().cast::<i8>(), std::mem::size_of_val(data));
        for off in (0..n).step_by(64) {
            // SAFETY: PREFETCHT1 never faults or changes memory (SSE, part of the x86_64
            // baseline); `p + off` lies inside `data`.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(p.add(off));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}
