//! Transparent huge pages for large buffers: embedding tables are read at random, and with 4 KiB
//! pages nearly every row read misses the TLB (under virtualisation a page walk costs several
//! memory accesses). 2 MiB pages cut those misses by 512×.
#![allow(unsafe_code)] // FFI: one madvise(2) call.

/// Buffers at least this large are advised to use huge pages.
pub const MIN_BYTES: usize = 4 << 20;

/// Advises the kernel to back `words` with transparent huge pages (Linux; a no-op elsewhere or
/// when the kernel declines). Call before first touching the memory.
pub fn advise<T>(words: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        let bytes = std::mem::size_of_val(words);
        if bytes < MIN_BYTES {
            return;
        }
        // madvise needs a page-aligned start: round up to the next 4 KiB page inside the slice.
        let start = words.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(4096);
        let len = (start + bytes).saturating_sub(aligned) & !4095;
        if len == 0 {
            return;
        }
        // SAFETY: [aligned, aligned + len) lies inside `words`, memory this process owns and
        // keeps mapped for the slice's lifetime. MADV_HUGEPAGE only changes how the kernel backs
        // the range; it never changes its contents, and a failure (EINVAL when THP is off) is
        // harmless, so the return value is ignored.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = words;
}
