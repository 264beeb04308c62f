//! Host memory for large random-access structures (the CPU backend's buffers, cache
//! directories, the lookahead planner's row maps) and the prefetch hint their readers use.
//!
//! Allocations of 2 MiB and more through [`HugePages`] are 2 MiB-aligned and advised to use
//! transparent huge pages before anything touches them, so random probes stop missing the TLB
//! on every access (a page walk under virtualisation costs several memory reads; 2 MiB pages
//! cut those misses by 512×).
#![allow(unsafe_code)] // An allocator, madvise(2), zero-filled slices of Zeroable types, a hint.

use allocator_api2::alloc::{AllocError, Allocator, Global};
use std::alloc::Layout;
use std::ptr::NonNull;

/// Allocations from this size up use huge pages.
const HUGE: usize = 2 << 20;

/// An allocator for hash maps and vectors probed at random (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePages;

/// Whether a request is served by a huge-page mapping of its own.
fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= HUGE
}

/// The layout a large request is served with: 2 MiB-aligned.
fn huge_layout(layout: Layout) -> Result<Layout, AllocError> {
    Layout::from_size_align(layout.size(), HUGE).map_err(|_| AllocError)
}

/// Allocates a large block for `layout` from the global allocator, 2 MiB-aligned, and advises
/// huge pages for it **before** anything touches it, then zero-fills it when asked: the kernel
/// backs each 2 MiB with one huge page at its first touch. (The global allocator's own
/// `alloc_zeroed` for such an alignment memsets the block before returning it, which faults
/// every small page first: no huge pages.) Freed blocks go back to the allocator, which hands
/// them out again without new page faults — a structure rebuilt every step costs no zeroing.
fn allocate_huge(layout: Layout, zeroed: bool) -> Result<NonNull<[u8]>, AllocError> {
    let big = huge_layout(layout)?;
    // SAFETY: `big` has a non-zero size (at least HUGE).
    let ptr = NonNull::new(unsafe { std::alloc::alloc(big) }).ok_or(AllocError)?;
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
    if zeroed {
        // SAFETY: the block is `big.size()` writable bytes.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), 0, big.size()) };
    }
    Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
}

// SAFETY: large blocks come from the global allocator with a 2 MiB alignment and are freed
// with that same layout (recomputed from the request's layout, which callers must pass back
// unchanged); small blocks and larger alignments are delegated to `Global` unchanged. Blocks
// stay valid until freed.
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if is_huge(layout) {
            allocate_huge(layout, false)
        } else {
            Global.allocate(layout)
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if is_huge(layout) {
            allocate_huge(layout, true)
        } else {
            Global.allocate_zeroed(layout)
        }
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: allocated by `allocate_huge` with exactly this 2 MiB-aligned layout.
            unsafe {
                std::alloc::dealloc(
                    ptr.as_ptr(),
                    Layout::from_size_align_unchecked(layout.size(), HUGE),
                )
            }
        } else {
            // SAFETY: allocated by `Global` with `layout`.
            unsafe { Global.deallocate(ptr, layout) }
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

/// [`zeroed_slice`], or `None` when the memory cannot be had.
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
