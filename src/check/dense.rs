//! Bias + activation and the DLRM interaction, forward and backward, against the CPU.

use super::kernels::both;
use super::{Checker, SUM, uniform};
use crate::device::cpu::CpuDevice;
use crate::device::kernels::interaction_width;
use crate::device::{
    Activation, BiasActBackward, BiasActForward, BiasActShape, Device, DeviceError, DeviceExt,
    InteractionBackward, InteractionForward, InteractionShape,
};

/// Bias + activation (ReLU, identity) forward, or forward then backward (the input gradient
/// and the bias gradient), over shapes crossing a workgroup.
pub fn bias_act<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    backward: bool,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for (rows, cols) in [(1, 1), (63, 3), (64, 64), (65, 100), (1000, 17)] {
        for act in [
            Activation::Relu,
            Activation::Identity,
            Activation::Sigmoid,
            Activation::Mish,
        ] {
            let (x, bias, dy) = (
                uniform(&mut r, rows * cols),
                uniform(&mut r, cols),
                uniform(&mut r, rows * cols),
            );
            let (got, want) = both!(dev, cpu, |d| {
                let xb = d.buffer_from_f32(&x)?;
                let bb = d.buffer_from_f32(&bias)?;
                let shape = BiasActShape {
                    rows: rows as u32,
                    cols: cols as u32,
                    act,
                };
                d.bias_act_forward(&BiasActForward {
                    x: &xb,
                    bias: &bb,
                    shape,
                })?;
                let mut out = d.read_f32(&xb, 0..rows * cols)?;
                if backward {
                    let (dyb, db) = (d.buffer_from_f32(&dy)?, d.alloc_elems(cols)?);
                    // Mish's backward takes the pre-activation, as the MLP keeps it.
                    let pre: Vec<f32> = (0..rows * cols).map(|i| x[i] + bias[i % cols]).collect();
                    let preb = d.buffer_from_f32(&pre)?;
                    let y = if act.needs_pre_activation() {
                        &preb
                    } else {
                        &xb
                    };
                    d.bias_act_backward(&BiasActBackward {
                        y,
                        dy: &dyb,
                        dbias: &db,
                        shape,
                    })?;
                    out = d.read_f32(&dyb, 0..rows * cols)?;
                    out.extend(d.read_f32(&db, 0..cols)?);
                }
                out
            });
            ck.compare(
                if backward {
                    "bias_act_backward"
                } else {
                    "bias_act_forward"
                },
                &format!("bias_act backward={backward} {act:?} {rows}x{cols}"),
                &got,
                &want,
                // The bias gradient sums `rows` terms (each within ±1), which the backends may
                // add in another order (wgpu: 16 lanes then a tree), as gemm's dot products.
                if backward {
                    (SUM.0, SUM.1 * (rows as f64).sqrt())
                } else {
                    SUM
                },
            );
        }
    }
    Ok(())
}

/// The dot interaction forward, or its backward, over batches, table counts and dims that
/// cross workgroups and warps.
pub fn interaction<D: Device>(
    dev: &D,
    cpu: &CpuDevice,
    backward: bool,
    ck: &mut Checker,
) -> Result<(), DeviceError> {
    let mut r = ck.rng();
    for (batch, tables, dim) in [
        (1, 1, 1),
        (63, 3, 3),
        (64, 8, 16),
        (65, 2, 100),
        (40, 26, 16),
        (7, 4, 128),
    ] {
        let width = interaction_width(tables as u32, dim as u32) as usize;
        let (dense, emb, dout) = (
            uniform(&mut r, batch * dim),
            uniform(&mut r, batch * tables * dim),
            uniform(&mut r, batch * width),
        );
        let (got, want) = both!(dev, cpu, |d| {
            let (db, eb) = (d.buffer_from_f32(&dense)?, d.buffer_from_f32(&emb)?);
            let shape = InteractionShape {
                batch: batch as u32,
                tables: tables as u32,
                dim: dim as u32,
            };
            if backward {
                let (gb, ddb, deb) = (
                    d.buffer_from_f32(&dout)?,
                    d.alloc_elems(batch * dim)?,
                    d.alloc_elems(batch * tables * dim)?,
                );
                d.interaction_backward(&InteractionBackward {
                    dense: &db,
                    emb: &eb,
                    dout: &gb,
                    ddense: &ddb,
                    demb: &deb,
                    shape,
                })?;
                let mut out = d.read_f32(&ddb, 0..batch * dim)?;
                out.extend(d.read_f32(&deb, 0..batch * tables * dim)?);
                out
            } else {
                let ob = d.alloc_elems(batch * width)?;
                d.interaction_forward(&InteractionForward {
                    dense: &db,
                    emb: &eb,
                    out: &ob,
                    shape,
                })?;
                d.read_f32(&ob, 0..batch * width)?
            }
        });
        ck.compare(
            if backward {
                "interaction_backward"
            } else {
                "interaction_forward"
            },
            &format!("interaction backward={backward} {batch}x{tables}x{dim}"),
            &got,
            &want,
            SUM,
        );
    }
    Ok(())
}
