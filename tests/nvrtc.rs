//! The CUDA kernels without a GPU: every `kernels/*.cu` compiles with NVRTC for the
//! architectures we ship for, its entry point takes exactly the arguments the host side passes,
//! and a broken kernel's error carries NVRTC's log and the kernel's name.
//!
//! NVRTC needs no GPU, only its library (CI installs PyPI's `nvidia-cuda-nvrtc-cu12` wheel and
//! puts it on `LD_LIBRARY_PATH`). Where it is absent these tests skip with a printed reason,
//! unless `ROWFLOW_REQUIRE_NVRTC=1` (set by `.ci/run`), which makes that a failure.
//! `cargo test nvrtc` selects them all.

use rowflow::device::cuda::compile::{ParamKind, ptx_params};
use rowflow::device::cuda::{compile_kernel, compile_source, nvrtc_available};
use rowflow::device::{DeviceError, KernelId};
use std::collections::BTreeSet;
use std::path::Path;

/// True when NVRTC can be used; otherwise prints why and returns false, or fails when CI
/// requires NVRTC.
fn nvrtc_or_skip() -> bool {
    match nvrtc_available() {
        Ok(()) => true,
        Err(e) if std::env::var("ROWFLOW_REQUIRE_NVRTC").is_ok_and(|v| v == "1") => {
            panic!("ROWFLOW_REQUIRE_NVRTC=1 but NVRTC is unavailable: {e}")
        }
        Err(e) => {
            println!("SKIPPED: {e}");
            false
        }
    }
}

#[test]
fn nvrtc_compiles_every_cuda_kernel_for_turing_ampere_and_hopper() {
    if !nvrtc_or_skip() {
        return;
    }
    if let Ok(dir) = std::env::var("ROWFLOW_CUDA_INCLUDE") {
        println!("CUDA headers from {dir}");
    }
    for arch in ["compute_75", "compute_80", "compute_90"] {
        for kernel in KernelId::CUDA {
            let ptx = compile_kernel(kernel, arch)
                .unwrap_or_else(|e| panic!("{} for {arch}: {e}", kernel.cuda_file()))
                .to_src();
            let entry = format!(".entry {}(", kernel.name());
            assert!(
                ptx.contains(&entry),
                "{} compiled for {arch} but its PTX has no `{entry}`",
                kernel.cuda_file()
            );
        }
    }
}

#[test]
fn nvrtc_entry_points_take_what_the_host_passes() {
    if !nvrtc_or_skip() {
        return;
    }
    for kernel in KernelId::CUDA {
        let ptx = compile_kernel(kernel, "compute_80")
            .unwrap_or_else(|e| panic!("{e}"))
            .to_src();
        let params = ptx_params(&ptx, kernel.name())
            .unwrap_or_else(|| panic!("no entry `{}` in the PTX", kernel.name()));
        let expected: Vec<ParamKind> = rowflow::device::cuda::signature(kernel).to_vec();
        assert_eq!(
            params,
            expected,
            "{}: the kernel's parameters (left) differ from what the launcher passes (right)",
            kernel.cuda_file()
        );
    }
}

#[test]
fn nvrtc_reports_the_log_and_the_kernel_of_a_broken_source() {
    if !nvrtc_or_skip() {
        return;
    }
    let source = "extern \"C\" __global__ void broken(float* x) { x[0] = not_declared_here; }";
    match compile_source("kernels/broken.cu", source, "compute_80") {
        Err(DeviceError::ShaderCompile { shader, message }) => {
            assert_eq!(shader, "kernels/broken.cu");
            assert!(
                message.contains("not_declared_here"),
                "NVRTC's log should name the undefined identifier: {message}"
            );
            let shown = DeviceError::ShaderCompile { shader, message }.to_string();
            assert!(
                shown.starts_with("kernels/broken.cu does not compile"),
                "{shown}"
            );
        }
        Err(other) => panic!("expected a compile error, got {other}"),
        Ok(_) => panic!("a kernel using an undeclared identifier compiled"),
    }
}

#[test]
fn nvrtc_kernel_list_matches_the_kernels_folder_and_its_wgsl_twins() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let stems = |dir: &str, ext: &str| -> BTreeSet<String> {
        std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == ext)
                    .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))?
            })
            .collect()
    };
    let cu = stems("kernels", "cu");
    let listed: BTreeSet<String> = KernelId::CUDA.iter().map(|k| k.name().into()).collect();
    assert_eq!(cu, listed, "kernels/*.cu and KernelId::CUDA differ");
    let mut wgsl = stems("shaders", "wgsl");
    // gemm is cuBLAS on CUDA: the one WGSL kernel without a .cu twin.
    assert!(wgsl.remove("gemm"), "shaders/gemm.wgsl is missing");
    assert_eq!(
        cu, wgsl,
        "every WGSL kernel but gemm needs a CUDA twin of the same name"
    );
}

#[test]
fn nvrtc_sources_embedded_in_the_binary_are_the_kernels_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for kernel in KernelId::CUDA {
        let file = std::fs::read_to_string(root.join(kernel.cuda_file()))
            .unwrap_or_else(|e| panic!("{}: {e}", kernel.cuda_file()));
        assert_eq!(Some(file.as_str()), kernel.cuda(), "{}", kernel.cuda_file());
    }
    assert_eq!(KernelId::Gemm.cuda(), None, "gemm is cuBLAS: no .cu");
}

#[test]
fn nvrtc_is_the_version_the_run_asked_for() {
    // `.ci/test` runs this file a second time with NVRTC 13 (PyPI's `nvidia-cuda-nvrtc`) first on
    // the library path and ROWFLOW_NVRTC_MAJOR=13, so both toolkits' NVRTC compile every kernel.
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = rowflow::device::cuda::nvrtc_version().unwrap();
    eprintln!("NVRTC {major}.{minor}");
    if let Ok(want) = std::env::var("ROWFLOW_NVRTC_MAJOR") {
        assert_eq!(major.to_string(), want, "NVRTC {major}.{minor} was loaded");
    }
}
