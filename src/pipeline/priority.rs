//! Host stages yield to the device stage: on a machine whose "device" is the same few cores
//! (CPU backend, lavapipe), background stages that compete with the device's kernels slow every
//! step; at a lower scheduling priority they use the cycles the device leaves idle (its serial
//! phases) instead.
#![allow(unsafe_code)] // FFI: gettid(2) and setpriority(2).

/// Nice value of the host stages (0 is normal, 19 the lowest).
const NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux; a no-op elsewhere or when refused).
pub fn background() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid takes no arguments and cannot fail; setpriority on PRIO_PROCESS with a
        // thread id changes only that thread's nice value, and a failure (e.g. not permitted)
        // leaves it unchanged, which is harmless, so its result is ignored.
        unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE);
        }
    }
}
