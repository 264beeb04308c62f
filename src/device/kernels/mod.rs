//! The kernels every backend runs: their names ([`KernelId`]) and their arguments (buffers plus
//! shapes), grouped by area like the backends' files: [`embedding`], [`dense`], [`quantize`],
//! [`hash`].
//!
//! Each argument struct names the kernel it feeds (`shaders/NAME.wgsl`, `kernels/NAME.cu`, CPU
//! `NAME`). Shapes are element counts; every f32/u32 tensor is row-major and dense unless a
//! stride is given. `validate` checks that the buffers are large enough for the shapes and that
//! no output is also an input, so that every backend rejects the same bad launches with the same
//! message before touching memory.

pub mod dense;
pub mod embedding;
pub mod hash;
pub mod quantize;

pub use dense::{
    Activation, BceLoss, BiasActBackward, BiasActForward, BiasActShape, DenseUpdate, Gemm,
    InteractionBackward, InteractionForward, InteractionShape, interaction_width, mish, mish_grad,
    sigmoid, softplus,
};
pub use embedding::{BagBackward, BagForward, BagShape, Pooling, RowGradMap, Strided};
pub use hash::{HashEncode, HashShape, HashTransform};
pub use quantize::{DequantizeRows, QuantizeRows, RowMove, StateRows};

use super::DeviceError;
use serde::{Deserialize, Serialize};

/// Declares [`KernelId`] from one list, so that a kernel's name, its WGSL source and its CUDA
/// source cannot drift apart: the sources are embedded by name (`shaders/NAME.wgsl` for every
/// kernel, `kernels/NAME.cu` for those under `nvrtc`). `include_str!` needs a literal path, hence
/// a macro rather than a function of the name.
macro_rules! kernel_ids {
    (
        nvrtc: { $($(#[doc = $doc:literal])* $id:ident = $name:literal,)* }
        library: { $($(#[doc = $ldoc:literal])* $lid:ident = $lname:literal,)* }
    ) => {
        /// One kernel, by its one name: `shaders/NAME.wgsl`, `kernels/NAME.cu` and the CPU
        /// function `NAME` (candle's kernel `Id`). Backends key their compiled kernels by it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum KernelId {
            $($(#[doc = $doc])* $id,)*
            $($(#[doc = $ldoc])* $lid,)*
        }

        impl KernelId {
            /// Every kernel, in declaration order (`kernel as usize` is its index here).
            pub const ALL: [KernelId; [$($name,)* $($lname,)*].len()] =
                [$(KernelId::$id,)* $(KernelId::$lid,)*];

            /// The kernels with a `kernels/NAME.cu`: all but those CUDA takes from a library
            /// (`gemm` is cuBLAS).
            pub const CUDA: [KernelId; [$($name,)*].len()] = [$(KernelId::$id,)*];

            /// The kernel's name: the file stem of its sources, the entry point of its CUDA
            /// source and the name of its CPU function.
            pub const fn name(self) -> &'static str {
                match self {
                    $(KernelId::$id => $name,)*
                    $(KernelId::$lid => $lname,)*
                }
            }

            /// The text of `shaders/NAME.wgsl`, embedded at build time.
            pub fn wgsl(self) -> &'static str {
                match self {
                    $(KernelId::$id => {
                        include_str!(concat!("../../../shaders/", $name, ".wgsl"))
                    })*
                    $(KernelId::$lid => {
                        include_str!(concat!("../../../shaders/", $lname, ".wgsl"))
                    })*
                }
            }

            /// The text of `kernels/NAME.cu`, embedded at build time; `None` for a kernel that
            /// CUDA runs from a library.
            pub fn cuda(self) -> Option<&'static str> {
                match self {
                    $(KernelId::$id => {
                        Some(include_str!(concat!("../../../kernels/", $name, ".cu")))
                    })*
                    $(KernelId::$lid => None,)*
                }
            }
        }
    };
}

kernel_ids! {
    nvrtc: {
        /// Pooled (sum or mean) lookup of table rows per bag.
        BagForward = "bag_forward",
        /// Fused embedding backward + SGD.
        BagBackwardSgd = "bag_backward_sgd",
        /// Fused embedding backward + row-wise Adagrad.
        BagBackwardAdagrad = "bag_backward_adagrad",
        /// Packed rows staged from the host store → FP32 cache slots.
        DequantizeRows = "dequantize_rows",
        /// FP32 cache slots → packed rows, nearest or stochastic rounding.
        QuantizeRows = "quantize_rows",
        /// Bias + activation, in place.
        BiasActForward = "bias_act_forward",
        /// Gradient of bias + activation, and the bias gradient.
        BiasActBackward = "bias_act_backward",
        /// DLRM pairwise dot interaction.
        InteractionForward = "interaction_forward",
        /// Gradient of the interaction.
        InteractionBackward = "interaction_backward",
        /// Sigmoid + binary cross-entropy: loss and gradient.
        BceLoss = "bce_loss",
        /// SGD or Adagrad on dense parameters.
        DenseUpdate = "dense_update",
        /// A DHE's first layer: k universal hashes of each id, as real numbers.
        HashEncode = "hash_encode",
    }
    library: {
        /// `C = alpha * op(A) * op(B) + beta * C` (cuBLAS on CUDA).
        Gemm = "gemm",
    }
}

impl KernelId {
    /// The fused embedding backward of an optimizer: Adagrad's when it keeps row state
    /// (`adagrad`), else SGD's.
    pub fn bag_backward(adagrad: bool) -> KernelId {
        if adagrad {
            KernelId::BagBackwardAdagrad
        } else {
            KernelId::BagBackwardSgd
        }
    }

    /// `shaders/NAME.wgsl`, the WGSL source's path in the repository (for messages).
    pub fn wgsl_file(self) -> String {
        format!("shaders/{}.wgsl", self.name())
    }

    /// `kernels/NAME.cu`, the CUDA source's path in the repository (for messages).
    pub fn cuda_file(self) -> String {
        format!("kernels/{}.cu", self.name())
    }
}

/// An update rule: the one optimizer enum, named in configs (`"sgd"`, `"adagrad"`) and applied
/// by the kernels (`dense_update`, the fused embedding backwards).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::VariantNames,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Optimizer {
    /// Plain stochastic gradient descent: `w -= lr * g`.
    Sgd,
    /// Adagrad: `s += g²; w -= lr * g / (sqrt(s) + eps)`, element-wise for dense parameters and
    /// row-wise (one accumulator per row, `g²` averaged over the row) for embeddings, as FBGEMM
    /// does.
    Adagrad,
}

/// An optimizer with Adagrad's constants (which SGD ignores).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerRule {
    /// SGD or Adagrad.
    pub optimizer: Optimizer,
    /// Adagrad's denominator term.
    pub eps: f32,
    /// The value Adagrad's accumulators start at (filled in by whoever allocates them).
    pub init: f32,
}

impl OptimizerRule {
    /// Whether the rule keeps per-parameter (or per-row) state.
    pub fn has_state(&self) -> bool {
        self.optimizer == Optimizer::Adagrad
    }
}

/// Checks that `buffer` holds at least `elems` 32-bit elements.
fn need(kernel: &'static str, what: &str, bytes: u64, elems: u64) -> Result<(), DeviceError> {
    if bytes / 4 < elems {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: format!(
                "`{what}` holds {} elements, the shapes need {elems}",
                bytes / 4
            ),
        });
    }
    Ok(())
}

/// Rejects a launch whose output is also one of its inputs: the CPU backend locks each buffer
/// once per launch, wgpu binds it once, and CUDA's `__restrict__` pointers promise the compiler
/// that they never alias. Buffers are not `Clone`, so one buffer is one address.
pub(crate) fn distinct<B>(kernel: &'static str, out: &B, inputs: &[&B]) -> Result<(), DeviceError> {
    if inputs.iter().any(|b| std::ptr::eq(*b, out)) {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: "an output buffer is also passed as an input".into(),
        });
    }
    Ok(())
}

fn nonzero(kernel: &'static str, what: &str, v: u32) -> Result<(), DeviceError> {
    if v == 0 {
        return Err(DeviceError::InvalidArgument {
            kernel,
            message: format!("`{what}` is 0"),
        });
    }
    Ok(())
}
