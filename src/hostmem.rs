//! Host memory for large random-access structures (the CPU backend's buffers, cache
//! directories, the lookahead planner's row maps) and the prefetch hint their readers use.
//!
//! Allocations of 2 MiB and more through [`HugePages`] are anonymous mappings of their own,
//! 2 MiB-aligned and advised to use transparent huge pages before anything touches them, so
//! random probes stop missing the TLB on every access (a page walk under virtualisation costs
//! several memory reads; 2 MiB pages cut those misses by 512×).
#![allow(unsafe_code)] // An allocator, mmap(2), madvise(2), zero-filled slices of Zeroable types, a hint.

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

/// Bytes of whole small pages covering `size`.
fn page_round(size: usize) -> usize {
    size.div_ceil(4096) * 4096
}

/// Maps a large block for `layout` (zero-filled, as anonymous memory is), 2 MiB-aligned, and
/// advises huge pages for it before anything touches it: the kernel then backs each 2 MiB of it
/// with one huge page at its first touch. (The global allocator zero-fills aligned blocks with
/// a memset before returning them, which faults every small page first: no huge pages.)
#[cfg(unix)]
fn allocate_huge(layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
    let size = page_round(layout.size());
    let span = size + HUGE;
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(AllocError);
    }
    let start = base as usize;
    let aligned = start.next_multiple_of(HUGE);
    let (head, tail) = (aligned - start, span - (aligned - start) - size);
    // SAFETY: both ranges lie inside the mapping just made and outside the block handed out;
    // unmapping them trims it to exactly [aligned, aligned + size). madvise only changes how
    // the kernel backs the block, and a refusal is harmless.
    unsafe {
        if head > 0 {
            libc::munmap(base, head);
        }
        if tail > 0 {
            libc::munmap((aligned + size) as *mut libc::c_void, tail);
        }
        #[cfg(target_os = "linux")]
        libc::madvise(aligned as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
    }
    let ptr = NonNull::new(aligned as *mut u8).ok_or(AllocError)?;
    Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
}

#[cfg(not(unix))]
fn allocate_huge(layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
    let big =
        Layout::from_size_align(layout.size(), layout.align().max(HUGE)).map_err(|_| AllocError)?;
    // SAFETY: `big` has a non-zero size (at least HUGE).
    let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(big) }).ok_or(AllocError)?;
    Ok(NonNull::slice_from_raw_parts(ptr, layout.size()))
}

/// Frees a block of [`allocate_huge`] for `layout`.
///
/// # Safety
/// `ptr` came from `allocate_huge(layout)` with this `layout`, and is not used again.
unsafe fn deallocate_huge(ptr: NonNull<u8>, layout: Layout) {
    #[cfg(unix)]
    // SAFETY: the block is exactly the mapping [ptr, ptr + page_round(size)) (see above).
    unsafe {
        libc::munmap(ptr.as_ptr().cast(), page_round(layout.size()));
    }
    #[cfg(not(unix))]
    // SAFETY: allocated by the global allocator with this layout.
    unsafe {
        let big = Layout::from_size_align_unchecked(layout.size(), layout.align().max(HUGE));
        std::alloc::dealloc(ptr.as_ptr(), big)
    }
}

// SAFETY: large blocks are mappings of their own (zero-filled), freed with the request's layout
// (which callers must pass back unchanged); small blocks are delegated to `Global` unchanged.
// Blocks stay valid until freed; the alignment is at least 2 MiB ≥ any requested alignment up
// to that (larger alignments are delegated to `Global`).
unsafe impl Allocator for HugePages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if is_huge(layout) {
            allocate_huge(layout)
        } else {
            Global.allocate(layout)
        }
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if is_huge(layout) {
            allocate_huge(layout)
        } else {
            Global.allocate_zeroed(layout)
        }
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if is_huge(layout) {
            // SAFETY: allocated by `allocate_huge` with this layout.
            unsafe { deallocate_huge(ptr, layout) }
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
