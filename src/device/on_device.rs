//! `on_device!`: one run's body, on a device of the backend chosen at run time.

/// Runs `$body` with `$dev` bound to a device of backend `$kind` (a
/// [`BackendKind`](crate::device::BackendKind)), created here; `?` on its creation needs the
/// caller's error type to take a [`DeviceError`](crate::device::DeviceError). The CLI and
/// rowflow-studio start their runs through it. With `cpu_threads: Some(n)`, the CPU backend
/// runs its kernels on `n` threads of its own, this one among them
/// ([`CpuDevice::with_threads`](crate::device::cpu::CpuDevice::with_threads)).
#[macro_export]
macro_rules! on_device {
    ($kind:expr, |$dev:ident| $body:expr) => {
        $crate::on_device!($kind, cpu_threads: None, |$dev| $body)
    };
    ($kind:expr, cpu_threads: $threads:expr, |$dev:ident| $body:expr) => {
        match $kind {
            $crate::device::BackendKind::Cpu => {
                let threads: Option<usize> = $threads;
                let $dev = &match threads {
                    Some(n) => $crate::device::cpu::CpuDevice::with_threads(n)?,
                    None => $crate::device::cpu::CpuDevice::new(),
                };
                $body
            }
            $crate::device::BackendKind::Wgpu => {
                let $dev = &$crate::device::wgpu::WgpuDevice::new()?;
                $body
            }
            $crate::device::BackendKind::Cuda => {
                let $dev = &$crate::device::cuda::CudaDevice::new()?;
                $body
            }
        }
    };
}
