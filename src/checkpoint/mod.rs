//! Checkpoint files: a directory holding `model.safetensors` (named tensors, readable by
//! PyTorch's `safetensors`) and `manifest.json` (format version, step, the run's config and
//! the list of tensors with their types and shapes).
//!
//! Writes are atomic: the checkpoint is written and synced into `DIR.tmp`, the previous one is
//! renamed to `DIR.old`, the new one to `DIR`, and `DIR.old` is removed. A run killed at any
//! point leaves a loadable checkpoint: [`load`] falls back to `DIR.old` when `DIR` is missing
//! and never reads `DIR.tmp`. A checkpoint of another format version, a truncated file or a
//! tensor of another shape is refused with an error naming the file or the tensor.

#[cfg(test)]
mod tests;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The tensors' file inside a checkpoint directory.
pub const TENSORS_FILE: &str = "model.safetensors";
/// The manifest's file inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Why a checkpoint cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or directory could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// What was being accessed.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Not a checkpoint of this format (another version, or not rowflow's at all).
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The manifest lists a tensor the file lacks, or a caller asks for one not saved.
    #[error("{path}: no tensor `{name}` in this checkpoint")]
    Missing {
        /// The tensors' file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor's shape or type differs from what the model needs.
    #[error("tensor `{name}`: the checkpoint has {found}, this run needs {expected}")]
    Mismatch {
        /// The tensor.
        name: String,
        /// Type and shape in the checkpoint.
        found: String,
        /// Type and shape the run needs.
        expected: String,
    },
}

/// One tensor's entry in the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    /// Its name in `model.safetensors`.
    pub name: String,
    /// `F32`, `U32`, `U8` or `I64` (safetensors' spelling).
    pub dtype: String,
    /// Its shape.
    pub shape: Vec<usize>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The writer's rowflow version.
    pub rowflow_version: String,
    /// Training steps done when saved.
    pub step: u64,
    /// The run's configuration, as JSON.
    pub config: serde_json::Value,
    /// Every tensor of `model.safetensors`, in name order.
    pub tensors: Vec<TensorEntry>,
}

/// A tensor's values.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 32-bit unsigned integers (cache slots, row ids, packed rows).
    U32(Vec<u32>),
    /// Bytes.
    U8(Vec<u8>),
    /// 64-bit signed integers (counters, positions).
    I64(Vec<i64>),
}

impl Values {
    fn dtype(&self) -> Dtype {
        match self {
            Values::F32(_) => Dtype::F32,
            Values::U32(_) => Dtype::U32,
            Values::U8(_) => Dtype::U8,
            Values::I64(_) => Dtype::I64,
        }
    }

    fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::U32(v) => v.len(),
            Values::U8(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    /// Little-endian bytes, as safetensors stores them.
    fn bytes(&self) -> Vec<u8> {
        match self {
            Values::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Values::U8(v) => v.clone(),
            Values::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    fn from_bytes(dtype: Dtype, b: &[u8]) -> Option<Values> {
        let words = |n: usize| b.chunks_exact(n);
        Some(match dtype {
            Dtype::F32 => Values::F32(
                words(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            Dtype::U32 => Values::U32(
                words(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            Dtype::U8 => Values::U8(b.to_vec()),
            Dtype::I64 => Values::I64(
                words(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            _ => return None,
        })
    }
}

/// A named tensor: its shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Its shape (the values are row-major).
    pub shape: Vec<usize>,
    /// Its values.
    pub values: Values,
}

/// A checkpoint in memory: the step, the config and the tensors by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Training steps done.
    pub step: u64,
    /// The run's configuration.
    pub config: serde_json::Value,
    /// The tensors, by name.
    pub tensors: BTreeMap<String, Tensor>,
}

impl Checkpoint {
    /// Adds a tensor (its values must fill `shape`).
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, values: Values) {
        debug_assert_eq!(shape.iter().product::<usize>(), values.len());
        self.tensors.insert(name.into(), Tensor { shape, values });
    }

    /// The f32 tensor `name`, which must have shape `shape`.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<&[f32], CheckpointError> {
        match self.get(name, shape, Dtype::F32)? {
            Values::F32(v) => Ok(v),
            _ => unreachable!("checked by get"),
        }
    }

    /// The u32 tensor `name`, which must have shape `shape`.
    pub fn u32(&self, name: &str, shape: &[usize]) -> Result<&[u32], CheckpointError> {
        match self.get(name, shape, Dtype::U32)? {
            Values::U32(v) => Ok(v),
            _ => unreachable!("checked by get"),
        }
    }

    /// The u8 tensor `name`, which must have shape `shape`.
    pub fn u8(&self, name: &str, shape: &[usize]) -> Result<&[u8], CheckpointError> {
        match self.get(name, shape, Dtype::U8)? {
            Values::U8(v) => Ok(v),
            _ => unreachable!("checked by get"),
        }
    }

    /// The i64 tensor `name`, which must have shape `shape`.
    pub fn i64(&self, name: &str, shape: &[usize]) -> Result<&[i64], CheckpointError> {
        match self.get(name, shape, Dtype::I64)? {
            Values::I64(v) => Ok(v),
            _ => unreachable!("checked by get"),
        }
    }

    /// The tensor `name`, whatever its shape.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, CheckpointError> {
        self.tensors
            .get(name)
            .ok_or_else(|| CheckpointError::Missing {
                path: PathBuf::from(TENSORS_FILE),
                name: name.into(),
            })
    }

    fn get(&self, name: &str, shape: &[usize], dtype: Dtype) -> Result<&Values, CheckpointError> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| CheckpointError::Missing {
                path: PathBuf::from(TENSORS_FILE),
                name: name.into(),
            })?;
        if t.shape != shape || t.values.dtype() != dtype {
            return Err(CheckpointError::Mismatch {
                name: name.into(),
                found: format!("{:?} {:?}", t.values.dtype(), t.shape),
                expected: format!("{dtype:?} {shape:?}"),
            });
        }
        Ok(&t.values)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `DIR` with a suffix on its last component (`DIR.tmp`, `DIR.old`).
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Writes `ckpt` to `dir` atomically (see the module docs).
pub fn save(dir: &Path, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let (tmp, old) = (sibling(dir, ".tmp"), sibling(dir, ".old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = ckpt
        .tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.values.dtype(),
                t.shape.clone(),
                t.values.bytes(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::Format {
            path: tmp.join(TENSORS_FILE),
            message: format!("cannot lay out the tensors: {e}"),
        })?;
    let file = tmp.join(TENSORS_FILE);
    let data = safetensors::serialize(views, None).map_err(|e| CheckpointError::Format {
        path: file.clone(),
        message: e.to_string(),
    })?;
    write_synced(&file, &data)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        rowflow_version: env!("CARGO_PKG_VERSION").into(),
        step: ckpt.step,
        config: ckpt.config.clone(),
        tensors: bytes
            .iter()
            .map(|(n, d, s, _)| TensorEntry {
                name: n.clone(),
                dtype: format!("{d:?}"),
                shape: s.clone(),
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&manifest).unwrap_or_default() + "\n";
    write_synced(&tmp.join(MANIFEST_FILE), text.as_bytes())?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(&tmp))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

fn write_synced(path: &Path, data: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Reads the checkpoint in `dir`, or in `DIR.old` when a save was interrupted between its
/// renames (see the module docs).
pub fn load(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let old = sibling(dir, ".old");
    let dir = if !dir.exists() && old.exists() {
        &old
    } else {
        dir
    };
    let mpath = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&mpath).map_err(io(&mpath))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| CheckpointError::Format {
        path: mpath.clone(),
        message: format!("not a rowflow checkpoint manifest: {e}"),
    })?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(CheckpointError::Format {
            path: mpath,
            message: format!(
                "format version {} (written by rowflow {}); this build reads version \
                 {FORMAT_VERSION}: use the rowflow that wrote it",
                manifest.format_version, manifest.rowflow_version
            ),
        });
    }
    let tpath = dir.join(TENSORS_FILE);
    let data = std::fs::read(&tpath).map_err(io(&tpath))?;
    let st = SafeTensors::deserialize(&data).map_err(|e| CheckpointError::Format {
        path: tpath.clone(),
        message: format!("unreadable or truncated ({e}); save it again or use another checkpoint"),
    })?;
    let mut ckpt = Checkpoint {
        step: manifest.step,
        config: manifest.config,
        tensors: BTreeMap::new(),
    };
    for entry in &manifest.tensors {
        let view = st
            .tensor(&entry.name)
            .map_err(|_| CheckpointError::Missing {
                path: tpath.clone(),
                name: entry.name.clone(),
            })?;
        let found = format!("{:?}", view.dtype());
        if found != entry.dtype || view.shape() != entry.shape {
            return Err(CheckpointError::Mismatch {
                name: entry.name.clone(),
                found: format!("{found} {:?} in {TENSORS_FILE}", view.shape()),
                expected: format!("{} {:?} from {MANIFEST_FILE}", entry.dtype, entry.shape),
            });
        }
        let values = Values::from_bytes(view.dtype(), view.data()).ok_or_else(|| {
            CheckpointError::Format {
                path: tpath.clone(),
                message: format!(
                    "tensor `{}` has type {found}, which rowflow never writes",
                    entry.name
                ),
            }
        })?;
        ckpt.tensors.insert(
            entry.name.clone(),
            Tensor {
                shape: entry.shape.clone(),
                values,
            },
        );
    }
    Ok(ckpt)
}
