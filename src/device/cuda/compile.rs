//! Kernels are data: every `kernels/NAME.cu` is embedded in the binary ([`KernelId::cuda`]) and
//! compiled by NVRTC, on first use, for the device's architecture. NVRTC needs no GPU, so the
//! compile step is tested on every machine that has the library (CI installs it from PyPI).

use crate::device::{BackendKind, DeviceError, KernelId};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

/// The environment variable naming a CUDA `include` folder (e.g. the one of PyPI's
/// `nvidia-cuda-runtime-cu12` wheel) passed to NVRTC. The kernels compile without it: they use no
/// CUDA header.
pub const INCLUDE_ENV: &str = "ROWFLOW_CUDA_INCLUDE";

/// The CUDA C++ source NVRTC compiles for `kernel`: its `kernels/NAME.cu` with the `#include
/// "….cuh"` lines replaced by the headers' text (NVRTC reads no files; `#line` keeps its messages
/// pointing at the right file and line). `None` for a kernel without a `.cu` (`gemm`: cuBLAS).
pub fn source(kernel: KernelId) -> Option<String> {
    let text = kernel.cuda()?;
    Some(splice_headers(text, &format!("{}.cu", kernel.name())))
}

/// The headers `kernels/*.cu` may include, by name.
const HEADERS: [(&str, &str); 1] = [(
    "embedding_rows.cuh",
    include_str!("../../../kernels/embedding_rows.cuh"),
)];

/// Replaces each `#include "NAME"` of a header in [`HEADERS`] by its text (once per source:
/// the headers are `#pragma once`); other lines pass through.
fn splice_headers(text: &str, file: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8192);
    let mut included: Vec<&str> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let name = line
            .trim()
            .strip_prefix("#include")
            .map(str::trim)
            .and_then(|rest| rest.strip_prefix('"')?.strip_suffix('"'));
        match name.and_then(|name| HEADERS.iter().find(|(h, _)| *h == name)) {
            Some((h, body)) => {
                if !included.contains(h) {
                    included.push(h);
                    out.push_str(&format!("#line 1 \"{h}\"\n{body}\n"));
                }
                out.push_str(&format!("#line {} \"{file}\"\n", n + 2));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Whether the NVRTC library can be loaded; `Err` says why not and what to do. cudarc panics
/// when it calls into a library that is missing, so every NVRTC call is behind this check.
pub fn nvrtc_available() -> Result<(), DeviceError> {
    // SAFETY: only tries to open the shared library (dlopen); calls nothing in it.
    let present = std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
        .unwrap_or(false);
    if present {
        Ok(())
    } else {
        Err(DeviceError::Unavailable {
            backend: BackendKind::Cuda,
            reason: "the NVRTC library (libnvrtc.so, .so.13 or .so.12) was not found: install \
                     the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` (or \
                     `nvidia-cuda-nvrtc` for CUDA 13) and put its `lib` folder on \
                     LD_LIBRARY_PATH"
                .into(),
        })
    }
}

/// The NVRTC library's version, `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32), DeviceError> {
    nvrtc_available()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is loaded (checked above); both pointers are to live locals.
    let r = unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    if r != cudarc::nvrtc::sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(DeviceError::Backend {
            backend: BackendKind::Cuda,
            message: format!("nvrtcVersion failed: {r:?}"),
        });
    }
    Ok((major, minor))
}

/// Whether PTX from NVRTC `nvrtc` (major, minor) can be loaded by a driver that supports CUDA
/// `driver` (as `cuDriverGetVersion` says it: 13000 for 13.0). A driver JIT-compiles PTX of its
/// own CUDA version or older only; newer PTX fails at module load with an obscure error, so
/// this is checked when the device opens, with what to do.
pub fn check_ptx_loadable(nvrtc: (i32, i32), driver: i32) -> Result<(), String> {
    let supported = (driver / 1000, (driver % 1000) / 10);
    if nvrtc > supported {
        return Err(format!(
            "NVRTC {}.{} makes PTX that the driver (CUDA {}.{}) cannot load: put an NVRTC of \
             CUDA {}.{} or older first on LD_LIBRARY_PATH (e.g. `pip install \
             nvidia-cuda-nvrtc-cu12`), or update the NVIDIA driver",
            nvrtc.0, nvrtc.1, supported.0, supported.1, supported.0, supported.1
        ));
    }
    Ok(())
}

/// The virtual architecture NVRTC compiles for, from a compute capability (`(9, 0)` →
/// `compute_90`). PTX for it is JIT-compiled by the driver for the exact GPU.
pub fn arch_for(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (..=7, _) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (8, _) => "compute_80",
        (9, _) => "compute_90",
        (10, _) => "compute_100",
        (12, _) => "compute_120",
        // A newer GPU runs PTX of an older architecture through the driver's JIT.
        _ => "compute_90",
    }
}

/// Compiles `kernel` to PTX for `arch` (e.g. `compute_80`). A compile failure is a
/// [`DeviceError::ShaderCompile`] carrying the kernel's file and NVRTC's log; a kernel without a
/// `.cu` (`gemm`, which is cuBLAS) is [`DeviceError::InvalidArgument`].
pub fn compile_kernel(kernel: KernelId, arch: &'static str) -> Result<Ptx, DeviceError> {
    let Some(source) = source(kernel) else {
        return Err(DeviceError::InvalidArgument {
            kernel: kernel.name(),
            message: "has no CUDA source to compile: the CUDA backend runs it from a library"
                .into(),
        });
    };
    compile_source(&kernel.cuda_file(), &source, arch)
}

/// Compiles CUDA C++ `source` (named `file` in messages) to PTX for `arch`, with the include
/// folder of [`INCLUDE_ENV`] when it is set.
pub fn compile_source(file: &str, source: &str, arch: &'static str) -> Result<Ptx, DeviceError> {
    nvrtc_available()?;
    let include_paths = std::env::var(INCLUDE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .into_iter()
        .collect();
    let options = CompileOptions {
        arch: Some(arch),
        include_paths,
        // Precise division and square root, no fused multiply-add contraction: quantization must
        // round exactly as the CPU does, and the other kernels stay within float tolerance of it.
        // These kernels are bound by memory, not arithmetic, so nothing is lost.
        prec_div: Some(true),
        fmad: Some(false),
        prec_sqrt: Some(true),
        ftz: Some(false),
        options: vec!["--std=c++17".into()],
        name: Some(file.rsplit('/').next().unwrap_or(file).to_string()),
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| match e {
        CompileError::CompileError { log, .. } => DeviceError::ShaderCompile {
            shader: file.to_string(),
            message: log.to_string_lossy().trim().to_string(),
        },
        other => DeviceError::ShaderCompile {
            shader: file.to_string(),
            message: format!("NVRTC failed: {other:?}"),
        },
    })
}

/// The kind of one kernel parameter, as the host passes it and as PTX declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A device address (`.u64` in PTX).
    Ptr,
    /// A 32-bit integer (`.u32` / `.s32`).
    U32,
    /// A 32-bit float (`.f32`).
    F32,
}

/// The parameters of entry point `name` in `ptx`, or `None` when there is no such entry. Lets a
/// test check, without a GPU, that the launcher passes what each kernel takes.
pub fn ptx_params(ptx: &str, name: &str) -> Option<Vec<ParamKind>> {
    let start = ptx.find(&format!(".entry {name}("))?;
    let body = &ptx[start..];
    let open = body.find('(')?;
    let close = body.find(')')?;
    let mut out = Vec::new();
    for param in body[open + 1..close].split(',') {
        let mut words = param.split_whitespace();
        if words.next() != Some(".param") {
            continue;
        }
        out.push(match words.next()? {
            ".u64" | ".b64" | ".s64" => ParamKind::Ptr,
            ".u32" | ".b32" | ".s32" => ParamKind::U32,
            ".f32" => ParamKind::F32,
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvrtc_sources_have_their_headers_spliced_in_once_with_line_markers() {
        let src = source(KernelId::BagForward).unwrap();
        assert!(
            !src.lines().any(|l| l.trim_start().starts_with("#include")),
            "no include directive is left for NVRTC"
        );
        assert!(src.contains("#line 1 \"embedding_rows.cuh\""));
        assert!(src.contains("row_grad4"), "the header's text is in");
        let twice = splice_headers(
            "#include \"embedding_rows.cuh\"\n#include \"embedding_rows.cuh\"\nint x;\n",
            "t.cu",
        );
        assert_eq!(twice.matches("#line 1 \"embedding_rows.cuh\"").count(), 1);
        assert!(twice.ends_with("#line 3 \"t.cu\"\nint x;\n"), "{twice}");
        // Includes of other files pass through for NVRTC to report.
        let other = splice_headers("#include \"missing.cuh\"\n", "t.cu");
        assert_eq!(other, "#include \"missing.cuh\"\n");
    }

    #[test]
    fn ptx_newer_than_the_driver_is_refused_up_front() {
        assert!(check_ptx_loadable((12, 9), 13000).is_ok());
        assert!(check_ptx_loadable((13, 0), 13000).is_ok());
        let e = check_ptx_loadable((13, 1), 13000).unwrap_err();
        assert!(e.contains("NVRTC 13.1") && e.contains("CUDA 13.0"), "{e}");
        assert!(check_ptx_loadable((13, 0), 12090).is_err());
    }
}
